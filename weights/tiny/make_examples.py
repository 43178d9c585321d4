"""Renders the example scenes in examples/ (scene_1.png ..) with their expected captions
(examples/captions.json), from a fixed seed that training never draws from."""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(root, "examples"))
    ap.add_argument("-n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=777)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    items = []
    for i in range(args.n):
        sc = scenes.random_scene(rng)
        name = f"scene_{i + 1}.png"
        Image.fromarray(scenes.render(sc)).save(os.path.join(args.out, name))
        items.append({"image": name, "en": scenes.caption_en(sc), "ru": scenes.caption_ru(sc)})
    with open(os.path.join(args.out, "captions.json"), "w", encoding="utf-8") as f:
        json.dump(items, f, ensure_ascii=False, indent=1)
    for it in items:
        print(it["image"], it["en"])


if __name__ == "__main__":
    main()
