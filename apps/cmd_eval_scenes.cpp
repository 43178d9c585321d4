// `glimpse eval-scenes [-n 200] [--seed S] [--lang en|ru|both] [--questions] [-m MODEL]`:
// scores glimpse's own answers on freshly rendered scenes of the tiny model's world (issue 6,
// weights/tiny/scenes.py is the Python original: same rules, not the same pixels).
//
// A scene: 1-3 shapes (circle, square, triangle pointing up; small ≈ 14 % or big ≈ 28 % of the
// 256 px canvas; seven colours) on a white, light gray or beige canvas, each in its own cell of
// a 3x3 grid, with ±8 px centre, ±10 % size and ±15 per channel colour jitter, anti-aliased by
// 3x3 supersampling. Captions list the shapes in reading order: "A big red circle at the top
// left, a small blue square in the center and a big yellow triangle at the bottom right."
//
// Scores: exact caption, and per attribute (count = number of shapes named; size, colour,
// shape and place of the k-th named shape against the k-th true one), per language; with
// --questions also the answers to every question of each scene, per kind and language.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "apps/commands.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "text/generation.h"
#include "text/sampler.h"

namespace glimpse::app {

namespace {

// ---- the world (weights/tiny/scenes.py) ------------------------------------------------------

constexpr int kCanvas = 256;
constexpr double kCell = kCanvas / 3.0;
const std::array<std::array<int, 3>, 3> kBackgrounds = {{{255, 255, 255}, {230, 230, 230}, {245, 235, 215}}};
const char* const kKinds[3] = {"circle", "square", "triangle"};
const char* const kSizes[2] = {"small", "big"};
const double kSizeFrac[2] = {0.14, 0.28};
const char* const kColours[7] = {"red", "green", "blue", "yellow", "purple", "orange", "black"};
const int kRgb[7][3] = {{220, 30, 30}, {30, 160, 60},  {40, 70, 220}, {240, 200, 20},
                        {130, 50, 160}, {245, 130, 20}, {20, 20, 20}};
const char* const kPlacesEn[9] = {"at the top left",    "at the top",    "at the top right",
                                  "on the left",        "in the center", "on the right",
                                  "at the bottom left", "at the bottom", "at the bottom right"};
const char* const kPlacesRu[9] = {"вверху слева", "вверху", "вверху справа", "слева", "в центре",
                                  "справа",       "внизу слева", "внизу", "внизу справа"};
const char* const kKindsRu[3] = {"круг", "квадрат", "треугольник"};
const char* const kSizesRu[2] = {"маленький", "большой"};
const char* const kColoursRu[7] = {"красный", "зелёный", "синий", "жёлтый", "фиолетовый", "оранжевый", "чёрный"};
const char* const kCountEn[3] = {"One.", "Two.", "Three."};
const char* const kCountRu[3] = {"Одна.", "Две.", "Три."};

struct Shape {
    int cell = 0, kind = 0, size = 0, colour = 0;  // indices into the tables above
    double cx = 0, cy = 0, diameter = 0;            // rendered, after jitter
    int rgb[3] = {0, 0, 0};
};

struct Scene {
    std::vector<Shape> shapes;  // reading order (cell ascending)
    int background = 0;
};

// Small, portable draws (std:: distributions differ between standard libraries).
struct Rng {
    std::mt19937_64 g;
    explicit Rng(uint64_t seed) : g(seed) {}
    int below(int n) { return int(g() % uint64_t(n)); }
    double uniform(double lo, double hi) { return lo + (hi - lo) * double(g() >> 11) * 0x1.0p-53; }
};

bool boxes_touch(const Shape& a, const Shape& b) {
    const double r = a.diameter / 2 + b.diameter / 2 + 2;
    return std::fabs(a.cx - b.cx) < r && std::fabs(a.cy - b.cy) < r;
}

Scene random_scene(Rng& rng) {
    Scene sc;
    const int n = 1 + rng.below(3);
    std::array<int, 9> cells = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < n; ++i) std::swap(cells[size_t(i)], cells[size_t(i + rng.below(9 - i))]);
    std::sort(cells.begin(), cells.begin() + n);
    for (int i = 0; i < n; ++i) sc.shapes.push_back({cells[size_t(i)], rng.below(3), rng.below(2), rng.below(7)});
    sc.background = rng.below(3);
    // Jitter until no two bounding boxes touch; the 20th try has none (never overlaps).
    for (int attempt = 0; attempt < 20; ++attempt) {
        const bool j = attempt < 19;
        for (Shape& s : sc.shapes) {
            s.cx = (s.cell % 3 + 0.5) * kCell + (j ? rng.uniform(-8, 8) : 0);
            s.cy = (s.cell / 3 + 0.5) * kCell + (j ? rng.uniform(-8, 8) : 0);
            s.diameter = kSizeFrac[s.size] * kCanvas * (j ? rng.uniform(0.9, 1.1) : 1);
            for (int c = 0; c < 3; ++c)
                s.rgb[c] = std::clamp(kRgb[s.colour][c] + (j ? rng.below(31) - 15 : 0), 0, 255);
        }
        bool touch = false;
        for (size_t a = 0; a < sc.shapes.size(); ++a)
            for (size_t b = a + 1; b < sc.shapes.size(); ++b) touch = touch || boxes_touch(sc.shapes[a], sc.shapes[b]);
        if (!touch) break;
    }
    return sc;
}

// Whether the point (x, y) in pixel coordinates is inside the shape. The triangle is
// equilateral, point up, as wide as the diameter, centred on its bounding box.
bool inside(const Shape& s, double x, double y) {
    const double r = s.diameter / 2, dx = x - s.cx, dy = y - s.cy;
    if (s.kind == 0) return dx * dx + dy * dy <= r * r;
    if (s.kind == 1) return std::fabs(dx) <= r && std::fabs(dy) <= r;
    const double h = r * std::sqrt(3.0), top = s.cy - h / 2, t = (y - top) / h;
    return y >= top && y <= s.cy + h / 2 && std::fabs(dx) <= t * r;
}

RgbImage render(const Scene& sc) {
    constexpr int ss = 3;  // supersamples per axis
    std::vector<float> img(size_t(kCanvas) * kCanvas * 3);
    for (size_t i = 0; i < img.size(); ++i) img[i] = float(kBackgrounds[size_t(sc.background)][i % 3]);
    for (const Shape& s : sc.shapes) {
        const double r = s.diameter / 2 + 1;
        const int x0 = std::max(int(s.cx - r), 0), x1 = std::min(int(s.cx + r) + 1, kCanvas);
        const int y0 = std::max(int(s.cy - r), 0), y1 = std::min(int(s.cy + r) + 1, kCanvas);
        for (int y = y0; y < y1; ++y)
            for (int x = x0; x < x1; ++x) {
                int hits = 0;
                for (int sy = 0; sy < ss; ++sy)
                    for (int sx = 0; sx < ss; ++sx) hits += inside(s, x + (sx + 0.5) / ss, y + (sy + 0.5) / ss);
                const float cov = float(hits) / (ss * ss);
                float* p = &img[(size_t(y) * kCanvas + size_t(x)) * 3];
                for (int c = 0; c < 3; ++c) p[c] = p[c] * (1 - cov) + float(s.rgb[c]) * cov;
            }
    }
    RgbImage out(kCanvas, kCanvas);
    for (size_t i = 0; i < img.size(); ++i) out.pixels[i] = uint8_t(std::clamp(std::lround(img[i]), 0L, 255L));
    return out;
}

// ---- captions and questions ---------------------------------------------------------------

std::string join(const std::vector<std::string>& parts, const std::string& conj) {
    std::string t;
    for (size_t i = 0; i < parts.size(); ++i) {
        if (i) t += i + 1 == parts.size() ? " " + conj + " " : ", ";
        t += parts[i];
    }
    return t;
}

// Upper-cases the first letter: ASCII, or a two-byte Cyrillic letter а..я / ё.
std::string capitalise(std::string t) {
    const auto b0 = uint8_t(t[0]);
    if (b0 >= 'a' && b0 <= 'z') {
        t[0] = char(b0 - 32);
    } else if (b0 == 0xD0 && t.size() > 1 && uint8_t(t[1]) >= 0xB0 && uint8_t(t[1]) <= 0xBF) {
        t[1] = char(uint8_t(t[1]) - 0x20);  // а..п → А..П
    } else if (b0 == 0xD1 && t.size() > 1 && uint8_t(t[1]) >= 0x80 && uint8_t(t[1]) <= 0x8F) {
        t[0] = char(0xD0);                  // р..я → Р..Я
        t[1] = char(uint8_t(t[1]) + 0x20);
    } else if (b0 == 0xD1 && t.size() > 1 && uint8_t(t[1]) == 0x91) {
        t[0] = char(0xD0);                  // ё → Ё
        t[1] = char(0x81);
    }
    return t;
}

std::string caption(const Scene& sc, bool ru) {
    std::vector<std::string> parts;
    for (const Shape& s : sc.shapes)
        parts.push_back(ru ? std::string(kSizesRu[s.size]) + " " + kColoursRu[s.colour] + " " + kKindsRu[s.kind] + " " +
                                 kPlacesRu[s.cell]
                           : std::string("a ") + kSizes[s.size] + " " + kColours[s.colour] + " " + kKinds[s.kind] + " " +
                                 kPlacesEn[s.cell]);
    return capitalise(join(parts, ru ? "и" : "and")) + ".";
}

struct Question {
    std::string kind;  // count | colour | where | present
    bool ru = false;
    std::string text, answer;
};

// Every kind of question for the scene, in both languages (scenes.py questions()): a named
// shape is always one whose kind occurs once in the scene.
std::vector<Question> questions(const Scene& sc, Rng& rng) {
    std::vector<Question> q;
    const int n = int(sc.shapes.size());
    q.push_back({"count", false, "How many shapes are there?", kCountEn[n - 1]});
    q.push_back({"count", true, "Сколько здесь фигур?", kCountRu[n - 1]});
    std::vector<const Shape*> unique;
    for (const Shape& s : sc.shapes) {
        int same = 0;
        for (const Shape& o : sc.shapes) same += o.kind == s.kind;
        if (same == 1) unique.push_back(&s);
    }
    if (!unique.empty()) {
        const Shape* s = unique[size_t(rng.below(int(unique.size())))];
        q.push_back({"colour", false, std::string("What colour is the ") + kKinds[s->kind] + "?",
                     capitalise(kColours[s->colour]) + "."});
        q.push_back({"colour", true, std::string("Какого цвета ") + kKindsRu[s->kind] + "?",
                     capitalise(kColoursRu[s->colour]) + "."});
        s = unique[size_t(rng.below(int(unique.size())))];
        q.push_back({"where", false, std::string("Where is the ") + kKinds[s->kind] + "?", capitalise(kPlacesEn[s->cell]) + "."});
        q.push_back({"where", true, std::string("Где ") + kKindsRu[s->kind] + "?", capitalise(kPlacesRu[s->cell]) + "."});
    }
    int colour = 0, kind = 0;
    auto present = [&](int c, int k) {
        for (const Shape& s : sc.shapes)
            if (s.colour == c && s.kind == k) return true;
        return false;
    };
    if (rng.below(2) == 0) {
        const Shape& s = sc.shapes[size_t(rng.below(n))];
        colour = s.colour, kind = s.kind;
    } else {
        do colour = rng.below(7), kind = rng.below(3);
        while (present(colour, kind));
    }
    const bool yes = present(colour, kind);
    q.push_back({"present", false, std::string("Is there a ") + kColours[colour] + " " + kKinds[kind] + "?", yes ? "Yes." : "No."});
    q.push_back({"present", true, std::string("Есть ли здесь ") + kColoursRu[colour] + " " + kKindsRu[kind] + "?",
                 yes ? "Да." : "Нет."});
    return q;
}

// ---- reading a caption back ---------------------------------------------------------------

struct Named {
    int size = -1, colour = -1, kind = -1, cell = -1;
};

int find_word(const char* const* table, int n, const std::string& w) {
    for (int i = 0; i < n; ++i)
        if (w == table[i]) return i;
    return -1;
}

// Splits "X, y and z." into the named shapes (-1 for a word it does not know).
std::vector<Named> parse_caption(std::string t, bool ru) {
    while (!t.empty() && (t.back() == '.' || t.back() == ' ' || t.back() == '\n')) t.pop_back();
    while (!t.empty() && t.front() == ' ') t.erase(0, 1);
    std::vector<std::string> parts;
    const std::string conj = ru ? " и " : " and ";
    size_t at = 0;
    for (;;) {
        size_t comma = t.find(", ", at), c2 = t.find(conj, at);
        const size_t cut = std::min(comma, c2);
        parts.push_back(t.substr(at, cut == std::string::npos ? std::string::npos : cut - at));
        if (cut == std::string::npos) break;
        at = cut + (cut == comma ? 2 : conj.size());
    }
    std::vector<Named> out;
    for (std::string p : parts) {
        Named s;
        std::vector<std::string> w;
        for (size_t i = 0, j; i < p.size(); i = j + 1) {
            j = p.find(' ', i);
            if (j == std::string::npos) j = p.size();
            w.push_back(p.substr(i, j - i));
        }
        if (!ru && !w.empty() && (w[0] == "A" || w[0] == "a")) w.erase(w.begin());
        if (w.size() >= 4) {
            for (int i = 0; i < 2; ++i) {  // the first shape's size word is capitalised in Russian
                const std::string word = ru ? kSizesRu[i] : kSizes[i];
                if (w[0] == word || w[0] == capitalise(word)) s.size = i;
            }
            s.colour = find_word(ru ? kColoursRu : kColours, 7, w[1]);
            s.kind = find_word(ru ? kKindsRu : kKinds, 3, w[2]);
            std::string place;
            for (size_t i = 3; i < w.size(); ++i) place += (i > 3 ? " " : "") + w[i];
            s.cell = find_word(ru ? kPlacesRu : kPlacesEn, 9, place);
        }
        out.push_back(s);
    }
    return out;
}

// ---- scoring ---------------------------------------------------------------------------------

struct Tally {
    int right = 0, total = 0;
    void add(bool ok) { right += ok, ++total; }
    double pct() const { return total ? 100.0 * right / total : 0.0; }
};

struct CaptionScore {
    Tally exact, count, size, colour, kind, place;
    void add(const Scene& sc, const std::string& got, bool ru) {
        exact.add(got == caption(sc, ru));
        const std::vector<Named> named = parse_caption(got, ru);
        count.add(named.size() == sc.shapes.size());
        for (size_t i = 0; i < sc.shapes.size(); ++i) {
            const Shape& s = sc.shapes[i];
            const Named n = i < named.size() ? named[i] : Named{};
            size.add(n.size == s.size), colour.add(n.colour == s.colour), kind.add(n.kind == s.kind);
            place.add(n.cell == s.cell);
        }
    }
    void print(const char* name) const {
        std::printf("%s captions: exact %.1f%% (%d/%d) | count %.1f%% | size %.1f%% | colour %.1f%% | shape %.1f%% | "
                    "place %.1f%%\n",
                    name, exact.pct(), exact.right, exact.total, count.pct(), size.pct(), colour.pct(), kind.pct(),
                    place.pct());
    }
};

struct EvalArgs {
    int n = 200;
    uint64_t seed = 20240601;
    std::string lang = "both", model, mmproj;
    bool questions = false, verbose = false;
    int threads = 0;
    DeviceArgs device;
};

// The greedy answer to one prompt about an already encoded image.
std::string answer(const VlmModel& m, LlamaContext& ctx, const EncodedImage& img, const std::string& prompt) {
    const MmPrompt p = build_prompt(m, prompt, {&img}, std::string());
    ctx.reset();
    std::vector<float> logits;
    eval_prompt(ctx, p, {&img}, logits);
    Sampler sampler(SamplerParams{});
    GenerateOptions gen;
    gen.max_tokens = 64;
    gen.stop_tokens = m.tokenizer->eog_ids();
    const GenerateResult r = continue_generation(ctx, logits, sampler, gen, [](int32_t) { return true; });
    std::string text = m.tokenizer->decode(r.tokens, false);
    while (!text.empty() && text.front() == ' ') text.erase(0, 1);  // the model answers " A big ..."
    return text;
}

int run_eval_scenes(const EvalArgs& a) {
    if (a.lang != "en" && a.lang != "ru" && a.lang != "both")
        throw Error(ErrorKind::Usage, "--lang must be en, ru or both, not '" + a.lang + "'");
    std::string model = a.model, mmproj = a.mmproj;
    if (model.empty()) std::tie(model, mmproj) = default_model_files();
    const Placement device = open_device(a.device, a.verbose);
    VlmModel m = open_vlm(model, mmproj);
    place_vlm(device, m, a.verbose);
    ThreadPool pool(a.threads);
    LlamaContext ctx(m.text, pool);
    std::printf("eval-scenes: %d scenes, seed %llu, model %s + %s, on %s\n", a.n,
                static_cast<unsigned long long>(a.seed), m.text.path.c_str(), m.vision.path.c_str(),
                device.label().c_str());

    Rng rng(a.seed);
    CaptionScore en, ru;
    std::map<std::string, Tally> q_en, q_ru;
    Tally q_all_en, q_all_ru;
    for (int i = 0; i < a.n; ++i) {
        const Scene sc = random_scene(rng);
        const EncodedImage img = encode_image(m, render(sc), ImageOptions{}, pool);
        for (const bool is_ru : {false, true}) {
            if ((is_ru && a.lang == "en") || (!is_ru && a.lang == "ru")) continue;
            const std::string got = answer(m, ctx, img, is_ru ? "Опиши картинку." : "Describe this image.");
            (is_ru ? ru : en).add(sc, got, is_ru);
            if (a.verbose && got != caption(sc, is_ru))
                std::printf("scene %d: got \"%s\"\n          want \"%s\"\n", i, got.c_str(), caption(sc, is_ru).c_str());
        }
        const std::vector<Question> qs = questions(sc, rng);  // drawn always: same scenes with or without
        if (!a.questions) continue;
        for (const Question& q : qs) {
            if ((q.ru && a.lang == "en") || (!q.ru && a.lang == "ru")) continue;
            const std::string got = answer(m, ctx, img, q.text);
            const bool ok = got == q.answer;
            (q.ru ? q_ru : q_en)[q.kind].add(ok);
            (q.ru ? q_all_ru : q_all_en).add(ok);
            if (a.verbose && !ok)
                std::printf("scene %d: %s got \"%s\", want \"%s\"\n", i, q.text.c_str(), got.c_str(), q.answer.c_str());
        }
    }
    if (a.lang != "ru") en.print("English");
    if (a.lang != "en") ru.print("Russian");
    auto print_q = [](const char* name, const Tally& all, std::map<std::string, Tally>& by) {
        std::printf("%s questions: %.1f%% (%d/%d) | count %.1f%% | colour %.1f%% | where %.1f%% | present %.1f%%\n", name,
                    all.pct(), all.right, all.total, by["count"].pct(), by["colour"].pct(), by["where"].pct(),
                    by["present"].pct());
    };
    if (a.questions && a.lang != "ru") print_q("English", q_all_en, q_en);
    if (a.questions && a.lang != "en") print_q("Russian", q_all_ru, q_ru);
    return 0;
}

}  // namespace

Command add_eval_scenes(CLI::App& app) {
    auto a = std::make_shared<EvalArgs>();
    auto* sub = app.add_subcommand("eval-scenes", "Score the model on freshly rendered scenes of the tiny model's world");
    sub->footer(
        "Renders N scenes (1-3 shapes on a 3x3 grid, weights/tiny/scenes.py's rules) and asks glimpse to\n"
        "describe each, greedily: exact-caption and per-attribute accuracy in English and Russian, and with\n"
        "--questions the answers to how many / what colour / where / is there. Without -m: the default model.");
    sub->add_option("-n", a->n, "scenes (default 200)")->check(CLI::Range(1, 100000));
    sub->add_option("--seed", a->seed, "scene seed (default 20240601; training used other scenes)");
    sub->add_option("--lang", a->lang, "en, ru or both (default both)");
    sub->add_flag("--questions", a->questions, "also ask the questions");
    sub->add_option("-m,--model", a->model, "model (default: the embedded tiny model)");
    sub->add_option("--mmproj", a->mmproj, "vision tower + projector GGUF");
    sub->add_option("-t,--threads", a->threads, "threads (default: one per hardware thread)")->check(CLI::Range(1, 1024));
    sub->add_flag("-v,--verbose", a->verbose, "print every wrong answer");
    add_device_option(sub, a->device);
    return {sub, [a] { return run_eval_scenes(*a); }};
}

}  // namespace glimpse::app
