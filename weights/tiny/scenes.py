"""The world the tiny model learns (issue 6): 1-3 shapes on a 256x256 canvas, each in its own
cell of a 3x3 grid, with English and Russian captions and questions.

A scene is a list of Shape(cell, kind, size, colour) plus the rendering jitter; everything is
drawn from a numpy Generator, so a seed gives the same scene everywhere. The C++ port
(apps/cmd_eval_scenes.cpp) follows the same rules (it need not be pixel-identical).
"""
from dataclasses import dataclass

import numpy as np

CANVAS = 256
CELL = CANVAS / 3
BACKGROUNDS = [(255, 255, 255), (230, 230, 230), (245, 235, 215)]
KINDS = ["circle", "square", "triangle"]
SIZES = ["small", "big"]
SIZE_FRAC = {"small": 0.14, "big": 0.28}  # of the canvas width, across
COLOURS = {
    "red": (220, 30, 30), "green": (30, 160, 60), "blue": (40, 70, 220), "yellow": (240, 200, 20),
    "purple": (130, 50, 160), "orange": (245, 130, 20), "black": (20, 20, 20),
}
COLOUR_NAMES = list(COLOURS)

PLACES_EN = ["at the top left", "at the top", "at the top right", "on the left", "in the center",
             "on the right", "at the bottom left", "at the bottom", "at the bottom right"]
PLACES_RU = ["вверху слева", "вверху", "вверху справа", "слева", "в центре", "справа",
             "внизу слева", "внизу", "внизу справа"]
KINDS_RU = {"circle": "круг", "square": "квадрат", "triangle": "треугольник"}
SIZES_RU = {"small": "маленький", "big": "большой"}
COLOURS_RU = {"red": "красный", "green": "зелёный", "blue": "синий", "yellow": "жёлтый",
              "purple": "фиолетовый", "orange": "оранжевый", "black": "чёрный"}
KINDS_PLURAL_EN = {"circle": "circles", "square": "squares", "triangle": "triangles"}
COUNT_EN = ["One.", "Two.", "Three."]
COUNT_RU = ["Одна.", "Две.", "Три."]  # "фигура" is feminine

PROMPT_DESCRIBE_EN = "Describe this image."
PROMPT_DESCRIBE_RU = "Опиши картинку."


@dataclass
class Shape:
    cell: int      # 0..8, row-major over the 3x3 grid
    kind: str      # circle | square | triangle
    size: str      # small | big
    colour: str    # a key of COLOURS
    cx: float = 0  # rendered centre (pixels), size and colour after jitter
    cy: float = 0
    diameter: float = 0
    rgb: tuple = (0, 0, 0)


@dataclass
class Scene:
    shapes: list   # in reading order (cell ascending)
    background: tuple


def _extent(s):
    """Half-width of the shape's bounding box (all three shapes fit a diameter-wide box)."""
    return s.diameter / 2


def random_scene(rng, jitter=True):
    n = int(rng.integers(1, 4))
    cells = sorted(rng.choice(9, size=n, replace=False).tolist())
    shapes = []
    for cell in cells:
        s = Shape(cell, KINDS[rng.integers(3)], SIZES[rng.integers(2)], COLOUR_NAMES[rng.integers(7)])
        shapes.append(s)
    background = BACKGROUNDS[rng.integers(3)]
    # Jitter: retry until no two bounding boxes touch (2 px margin); zero jitter never overlaps.
    for attempt in range(20):
        for s in shapes:
            j = jitter and attempt < 19
            row, col = divmod(s.cell, 3)
            s.cx = (col + 0.5) * CELL + (rng.uniform(-8, 8) if j else 0)
            s.cy = (row + 0.5) * CELL + (rng.uniform(-8, 8) if j else 0)
            s.diameter = SIZE_FRAC[s.size] * CANVAS * (rng.uniform(0.9, 1.1) if j else 1)
            base = COLOURS[s.colour]
            s.rgb = tuple(int(np.clip(c + (rng.integers(-15, 16) if j else 0), 0, 255)) for c in base)
        if not any(_boxes_touch(a, b) for i, a in enumerate(shapes) for b in shapes[i + 1:]):
            break
    return Scene(shapes, background)


def _boxes_touch(a, b):
    return (abs(a.cx - b.cx) < _extent(a) + _extent(b) + 2) and (abs(a.cy - b.cy) < _extent(a) + _extent(b) + 2)


def _coverage(s, xs, ys):
    """1 inside the shape, 0 outside, at sample points (xs, ys) in pixel coordinates."""
    r = s.diameter / 2
    dx, dy = xs - s.cx, ys - s.cy
    if s.kind == "circle":
        return (dx * dx + dy * dy <= r * r)
    if s.kind == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    # Equilateral triangle, point up, width = diameter, centred on its bounding box.
    h = r * np.sqrt(3.0)
    top, bottom = s.cy - h / 2, s.cy + h / 2
    t = (ys - top) / h  # 0 at the apex, 1 at the base
    return (ys >= top) & (ys <= bottom) & (np.abs(dx) <= t * r)


def render(scene, ss=3):
    """uint8 [256, 256, 3]. Anti-aliased by ss x ss supersampling inside each shape's box."""
    img = np.empty((CANVAS, CANVAS, 3), np.float32)
    img[:] = scene.background
    for s in scene.shapes:
        r = s.diameter / 2 + 1
        x0, x1 = max(int(s.cx - r), 0), min(int(s.cx + r) + 1, CANVAS)
        y0, y1 = max(int(s.cy - r), 0), min(int(s.cy + r) + 1, CANVAS)
        offs = (np.arange(ss) + 0.5) / ss
        xs = (np.arange(x0, x1)[:, None] + offs[None, :]).reshape(-1)
        ys = (np.arange(y0, y1)[:, None] + offs[None, :]).reshape(-1)
        cov = _coverage(s, xs[None, :], ys[:, None]).astype(np.float32)
        cov = cov.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - cov) + np.array(s.rgb, np.float32) * cov
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _join(parts, conj):
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + f" {conj} " + parts[-1]


def caption_en(scene):
    parts = [f"a {s.size} {s.colour} {s.kind} {PLACES_EN[s.cell]}" for s in scene.shapes]
    text = _join(parts, "and")
    return text[0].upper() + text[1:] + "."


def caption_ru(scene):
    parts = [f"{SIZES_RU[s.size]} {COLOURS_RU[s.colour]} {KINDS_RU[s.kind]} {PLACES_RU[s.cell]}" for s in scene.shapes]
    text = _join(parts, "и")
    return text[0].upper() + text[1:] + "."


def _cap(t):
    return t[0].upper() + t[1:] + "."


def questions(scene, rng):
    """All question kinds for a scene, as (lang, question, answer); a named shape is always one
    whose kind occurs once in the scene, so every question has one answer."""
    qa = []
    n = len(scene.shapes)
    qa.append(("en", "How many shapes are there?", COUNT_EN[n - 1]))
    qa.append(("ru", "Сколько здесь фигур?", COUNT_RU[n - 1]))
    kinds = [s.kind for s in scene.shapes]
    unique = [s for s in scene.shapes if kinds.count(s.kind) == 1]
    if unique:
        s = unique[rng.integers(len(unique))]
        qa.append(("en", f"What colour is the {s.kind}?", _cap(s.colour)))
        qa.append(("ru", f"Какого цвета {KINDS_RU[s.kind]}?", _cap(COLOURS_RU[s.colour])))
        s = unique[rng.integers(len(unique))]
        qa.append(("en", f"Where is the {s.kind}?", _cap(PLACES_EN[s.cell])))
        qa.append(("ru", f"Где {KINDS_RU[s.kind]}?", _cap(PLACES_RU[s.cell])))
    # Presence: half the time a (colour, kind) that is there, else one that is not.
    present = {(s.colour, s.kind) for s in scene.shapes}
    if rng.random() < 0.5:
        colour, kind = sorted(present)[rng.integers(len(present))]
    else:
        absent = [(c, k) for c in COLOUR_NAMES for k in KINDS if (c, k) not in present]
        colour, kind = absent[rng.integers(len(absent))]
    yes = (colour, kind) in present
    qa.append(("en", f"Is there a {colour} {kind}?", "Yes." if yes else "No."))
    qa.append(("ru", f"Есть ли здесь {COLOURS_RU[colour]} {KINDS_RU[kind]}?", "Да." if yes else "Нет."))
    return qa


def all_tasks(scene, rng):
    """(prompt, answer) pairs for a scene: both captions, then the questions."""
    tasks = [(PROMPT_DESCRIBE_EN, caption_en(scene)), (PROMPT_DESCRIBE_RU, caption_ru(scene))]
    tasks += [(q, a) for _, q, a in questions(scene, rng)]
    return tasks


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for _ in range(3):
        sc = random_scene(rng)
        print(caption_en(sc), "|", caption_ru(sc))
        for t in questions(sc, rng):
            print("   ", t)
