// `glimpse inspect` end to end through the binary (the default model and the golden SmolVLM
// pair): the four files, their pictures' sizes and content, the token listing, the probability
// tables; and the decoder's attention capture it is built on.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fusion/inspect_pictures.h"
#include "core/thread_pool.h"
#include "fusion/tile_sheet.h"
#include "fusion/vlm.h"
#include "tests/helpers.h"
#include "tests/test_vk_helpers.h"
#include "text/llama_forward.h"
#include "vision/bitmap_font.h"
#include "vision/image.h"

using namespace glimpse;
using test::run_glimpse;
using test::shell_quote;
namespace fs = std::filesystem;

namespace {

const fs::path kSource = GLIMPSE_SOURCE_DIR;
const fs::path kTinyText = kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf";
const fs::path kTinyMmproj = kSource / "weights" / "tiny" / "mmproj-tiny-smolvlm-f32.gguf";

std::string q(const fs::path& p) { return shell_quote(p.string()); }

std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Variance of all the channel values of the rectangle [x0, x0+w) × [y0, y0+h).
double pixel_variance(const RgbImage& img, int x0, int y0, int w, int h) {
    double sum = 0, sum2 = 0;
    int64_t n = 0;
    for (int y = y0; y < y0 + h && y < img.height; ++y)
        for (int x = x0; x < x0 + w && x < img.width; ++x)
            for (int c = 0; c < 3; ++c) {
                const double v = img.at(x, y)[c];
                sum += v;
                sum2 += v * v;
                ++n;
            }
    if (n == 0) return 0;
    const double mean = sum / double(n);
    return sum2 / double(n) - mean * mean;
}

struct ProbTable {
    int32_t chosen = -1;
    std::vector<int32_t> ids;
    std::vector<double> probs;
};

// probs.txt: "step N: chose 'x' (id I, ...)" then rows "  rank  id  probability  'token'".
std::vector<ProbTable> parse_probs(const std::string& text) {
    std::vector<ProbTable> tables;
    std::istringstream in(text);
    std::string line;
    const std::regex head(R"(^step (\d+): chose '.*' \(id (\d+), probability ([0-9.]+)\)$)");
    const std::regex row(R"(^ +(\d+) +(\d+) +([0-9.]+)  '.*'$)");
    std::smatch mt;
    while (std::getline(in, line)) {
        if (std::regex_match(line, mt, head)) {
            REQUIRE(std::stoi(mt[1]) == int(tables.size()) + 1);
            tables.emplace_back();
            tables.back().chosen = std::stoi(mt[2]);
        } else if (std::regex_match(line, mt, row)) {
            REQUIRE(!tables.empty());
            tables.back().ids.push_back(std::stoi(mt[2]));
            tables.back().probs.push_back(std::stod(mt[3]));
        }
    }
    return tables;
}

// tokens.txt: the ids after "answer: N generated tokens".
std::vector<int32_t> answer_ids(const std::string& tokens_txt, int& declared) {
    const size_t at = tokens_txt.find("\nanswer: ");
    REQUIRE(at != std::string::npos);
    std::istringstream in(tokens_txt.substr(at + 9));
    in >> declared;
    std::string line;
    std::getline(in, line);
    std::vector<int32_t> ids;
    while (std::getline(in, line)) ids.push_back(std::stoi(line));
    return ids;
}

// Sum of the "[...: N image positions]" runs of tokens.txt, and how many runs there are.
int image_positions_listed(const std::string& tokens_txt, int& runs) {
    const std::regex run(R"(\n  \[[a-z0-9 ]+: (\d+) image positions\])");
    int total = 0;
    runs = 0;
    for (auto it = std::sregex_iterator(tokens_txt.begin(), tokens_txt.end(), run); it != std::sregex_iterator(); ++it) {
        total += std::stoi((*it)[1]);
        ++runs;
    }
    return total;
}

// Everything inspect promises about its four files, for model `m` on `image`.
void check_outputs(const VlmModel& m, const fs::path& image, const fs::path& dir, int max_tokens) {
    for (const char* f : {"tiles.png", "tokens.txt", "attention.png", "probs.txt"}) {
        INFO(f);
        REQUIRE(fs::is_regular_file(dir / f));
    }
    ImageGrid grid;
    const std::vector<RgbImage> tiles = preprocess_image(m, load_image(image.string()), ImageOptions{}, grid);

    // tiles.png: the tile sheet with its patch grid, pixel for pixel, and the caption under it.
    const RgbImage sheet = tile_sheet(tiles, grid, m.vision.config.patch_size);
    const RgbImage tiles_png = load_image((dir / "tiles.png").string());
    REQUIRE(tiles_png.width >= sheet.width);
    REQUIRE(tiles_png.height > sheet.height + 40);
    bool same = true;
    for (int y = 0; y < sheet.height && same; ++y)
        same = std::equal(sheet.row(y), sheet.row(y) + size_t(sheet.width) * 3, tiles_png.row(y));
    CHECK(same);
    CHECK(pixel_variance(tiles_png, 0, sheet.height, tiles_png.width, tiles_png.height - sheet.height) > 100);

    // tokens.txt: the image-token runs add up to the image's tokens; the answer's ids.
    const std::string tokens_txt = slurp(dir / "tokens.txt");
    int runs = 0;
    CHECK(image_positions_listed(tokens_txt, runs) == grid.n_embeddings());
    CHECK(runs == grid.n_tiles());
    const std::string count_line = "image tokens: " + std::to_string(grid.n_tiles()) + " tiles x " +
                                   std::to_string(grid.tokens_per_tile) + " = " + std::to_string(grid.n_embeddings());
    CHECK(tokens_txt.find(count_line) != std::string::npos);
    int declared = -1;
    const std::vector<int32_t> answer = answer_ids(tokens_txt, declared);
    CHECK(int(answer.size()) == declared);
    REQUIRE(!answer.empty());
    CHECK(int(answer.size()) <= max_tokens);

    // probs.txt: one table per generated token, probabilities descending and summing to <= 1,
    // the chosen (greedy) token first.
    const std::vector<ProbTable> tables = parse_probs(slurp(dir / "probs.txt"));
    REQUIRE(tables.size() == answer.size());
    for (size_t i = 0; i < tables.size(); ++i) {
        INFO("step " << i + 1);
        const ProbTable& t = tables[i];
        CHECK(t.chosen == answer[i]);
        REQUIRE(t.probs.size() == 10);
        CHECK(t.ids[0] == t.chosen);
        CHECK(std::is_sorted(t.probs.rbegin(), t.probs.rend()));
        double sum = 0;
        for (double p : t.probs) sum += p;
        CHECK(sum <= 1.0 + 1e-5);
        CHECK(t.probs[0] > 0.0);
    }

    // attention.png: a title line, then cells of 160 px, 8 to a row, each with two text lines
    // (characters 2 × kGlyphH high + 4) and an 8-px margin under it.
    const RgbImage att = load_image((dir / "attention.png").string());
    const int line = 2 * kGlyphH + 4, top = 8 + line, cell_h = 160 + 2 * line + 8;
    const int n = int(answer.size()), cols = std::min(n, 8), rows = (n + 7) / 8;
    CHECK(att.width >= 8 + cols * 168);
    CHECK(att.height == top + rows * cell_h);
    // Each cell is a heat map, not a flat colour; and the maps of two steps are not all the same.
    CHECK(pixel_variance(att, 8, top, 160, 160) > 200);
    bool differ = false;
    for (int i = 1; i < n && !differ; ++i) {
        const int x = 8 + (i % 8) * 168, y = top + (i / 8) * cell_h;
        for (int yy = 0; yy < 160 && !differ; yy += 4)
            differ = !std::equal(att.at(8, top + yy), att.at(8, top + yy) + 160 * 3, att.at(x, y + yy));
    }
    if (n > 1) CHECK(differ);
}

}  // namespace

TEST_CASE("inspect CLI: the default model writes tiles, tokens, attention and probabilities", "[inspect][cli]") {
    test::TempDir tmp;
    const fs::path image = kSource / "examples" / "scene_3.png";
    const auto r = run_glimpse("inspect " + q(image) + " -o " + q(tmp / "out") + " -t 2");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    const VlmModel m = open_vlm(kTinyText.string(), kTinyMmproj.string());
    check_outputs(m, image, tmp / "out", 32);

    // The answer is describe's: watching the attention does not change what the model says.
    const auto d = run_glimpse("describe " + q(image) + " -t 2");
    REQUIRE(d.exit_code == 0);
    CHECK(r.out.find("answer:" + d.out) != std::string::npos);
    CHECK(r.out.find("image tokens: ") == std::string::npos);  // the summary, not tokens.txt
    CHECK(r.out.find("-> 16 image tokens") != std::string::npos);
}

TEST_CASE("inspect CLI: the golden SmolVLM pair, split into tiles, greedy ids as the reference", "[inspect][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    std::ifstream in(dir / "ref-hf-e2e" / "result.json");
    const auto ref = nlohmann::json::parse(in)["image_prompts"][0];
    const fs::path image = dir / "images" / ref["image"].get<std::string>();
    const fs::path text = dir / "smolvlm-tiny-text-f32.gguf", mmproj = dir / "mmproj-smolvlm-tiny-f32.gguf";
    const VlmModel m = open_vlm(text.string(), mmproj.string());
    // On the CPU, and with the vision tower on a Vulkan device where there is one (lavapipe).
    std::vector<std::string> devices = {"cpu"};
    if (test::vk_test_context()) devices.push_back("vulkan");
    else WARN("no Vulkan device: inspect --device vulkan not run on the golden pair");
    for (const std::string& device : devices) {
        INFO("--device " << device);
        test::TempDir tmp;
        const auto r = run_glimpse("inspect " + q(image) + " -m " + q(text) + " --mmproj " + q(mmproj) + " -n 6 -o " +
                                   q(tmp / "out") + " -t 2 --layer 1 --device " + device);
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        check_outputs(m, image, tmp / "out", 6);
        int declared = 0;
        const std::vector<int32_t> ids = answer_ids(slurp(tmp / "out" / "tokens.txt"), declared);
        const auto want = ref["greedy"]["tokens"].get<std::vector<int32_t>>();
        REQUIRE(want.size() >= ids.size());
        CHECK(ids == std::vector<int32_t>(want.begin(), want.begin() + std::ptrdiff_t(ids.size())));
        CHECK(r.out.find("attention: layer 1, heads averaged") != std::string::npos);
    }
}

TEST_CASE("inspect CLI: bad input is one line and its exit code; --device is refused (CPU-only capture)", "[inspect][cli]") {
    test::TempDir tmp;
    const auto missing = run_glimpse("inspect " + q(tmp / "nothing.png") + " -o " + q(tmp / "out"));
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("nothing.png") != std::string::npos);
    CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

    const fs::path image = kSource / "examples" / "scene_1.png";
    const auto layer = run_glimpse("inspect " + q(image) + " --layer 3 -o " + q(tmp / "out"));
    CHECK(layer.exit_code == 1);
    CHECK(layer.err.find("--layer 3: the model has 3 decoder layers") != std::string::npos);

    test::write_file(tmp / "file", std::string("x"));
    const auto out = run_glimpse("inspect " + q(image) + " -o " + q(tmp / "file" / "sub"));
    CHECK(out.exit_code == 2);
    CHECK(out.err.find("cannot create the output folder") != std::string::npos);

    // A device that does not exist is a device error (exit 4), as for the other commands.
    const auto a = run_glimpse("inspect " + q(image) + " --device vulkan:99 -o " + q(tmp / "out"));
    CHECK(a.exit_code == 4);
    CHECK(std::count(a.err.begin(), a.err.end(), '\n') == 1);
}

TEST_CASE("inspect CLI: --device vulkan encodes the image on the device and says where the decoder runs", "[inspect][cli][vulkan]") {
    VK_OR_SKIP(vk_ctx);
    test::TempDir tmp;
    const fs::path image = kSource / "examples" / "scene_4.png";
    const auto cpu = run_glimpse("inspect " + q(image) + " --device cpu -t 2 -o " + q(tmp / "cpu"));
    REQUIRE(cpu.exit_code == 0);
    const auto gpu = run_glimpse("inspect " + q(image) + " --device vulkan -t 2 -o " + q(tmp / "gpu"));
    INFO(gpu.err);
    REQUIRE(gpu.exit_code == 0);
    CHECK(gpu.err.find("vision tower + projector on vulkan device") != std::string::npos);
    CHECK(gpu.err.find("the decoder runs on the cpu") != std::string::npos);
    for (const char* name : {"tiles.png", "tokens.txt", "attention.png", "probs.txt"}) {
        INFO(name);
        CHECK(fs::file_size(tmp / "gpu" / name) > 0);
    }
    // The same prompt and, the image embeddings agreeing to ~1e-3 (tests/test_vk_forward.cpp),
    // the same greedy choices as on the CPU.
    const auto chosen = [](const fs::path& probs) {
        const std::string text(reinterpret_cast<const char*>(test::read_file(probs).data()), fs::file_size(probs));
        std::string lines;
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
            if (line.rfind("step ", 0) == 0) lines += line.substr(0, line.find(", probability")) + "\n";
        return lines;
    };
    CHECK(test::read_file(tmp / "gpu" / "tokens.txt") == test::read_file(tmp / "cpu" / "tokens.txt"));
    CHECK(!chosen(tmp / "cpu" / "probs.txt").empty());
    CHECK(chosen(tmp / "gpu" / "probs.txt") == chosen(tmp / "cpu" / "probs.txt"));
    const RgbImage cpu_att = load_image((tmp / "cpu" / "attention.png").string());
    const RgbImage gpu_att = load_image((tmp / "gpu" / "attention.png").string());
    CHECK(gpu_att.width == cpu_att.width);
    CHECK(gpu_att.height == cpu_att.height);
}

TEST_CASE("attention capture: rows are distributions over the cache and change nothing", "[inspect]") {
    const VlmModel m = open_vlm(kTinyText.string(), kTinyMmproj.string());
    ThreadPool pool(2);
    LlamaContext plain(m.text, pool, 64), watched(m.text, pool, 64);
    AttentionCapture cap;
    watched.set_attention_capture(&cap);
    const std::vector<int32_t> ids = m.tokenizer->encode("A big red circle at the top.", true, true);
    REQUIRE(ids.size() >= 4);
    const int V = m.text.config.n_vocab;
    std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));

    // One token: it can only look at itself.
    watched.forward(ids.data(), 1, 0, b.data());
    REQUIRE(cap.n_kv == 1);
    REQUIRE(cap.n_layers == m.text.config.n_layers);
    for (int l = 0; l < cap.n_layers; ++l)
        for (int h = 0; h < cap.n_heads; ++h) CHECK(cap.row(l, h)[0] == Approx(1.0f));

    // A prefill, then decode steps: each capture covers every cached position, sums to 1, and the
    // logits are those of a context without the capture, bit for bit.
    watched.reset();
    const int n0 = int(ids.size()) - 2;
    plain.forward(ids.data(), n0, 0, a.data());
    watched.forward(ids.data(), n0, 0, b.data());
    CHECK(a == b);
    for (int pos = n0; pos <= int(ids.size()); ++pos) {
        INFO("position " << pos);
        REQUIRE(cap.n_kv == watched.n_past());
        REQUIRE(cap.probs.size() == size_t(cap.n_layers) * size_t(cap.n_heads) * size_t(cap.n_kv));
        for (int l = 0; l < cap.n_layers; ++l)
            for (int h = 0; h < cap.n_heads; ++h) {
                const float* p = cap.row(l, h);
                double sum = 0;
                for (int j = 0; j < cap.n_kv; ++j) {
                    CHECK(p[j] >= 0.0f);
                    sum += p[j];
                }
                CHECK(sum == Approx(1.0).epsilon(1e-5));
            }
        if (pos == int(ids.size())) break;
        plain.forward(&ids[size_t(pos)], 1, pos, a.data());
        watched.forward(&ids[size_t(pos)], 1, pos, b.data());
        CHECK(a == b);
    }
    // Unset: forward() leaves the old capture alone.
    watched.set_attention_capture(nullptr);
    const int kept = cap.n_kv;
    watched.forward(ids.data(), 2, 0, b.data());
    CHECK(cap.n_kv == kept);
}

TEST_CASE("inspect pictures: the attention map is brightest where the weight is", "[inspect]") {
    // Two 32×32 tiles of mid grey in a 1 × 1 grid + global image, 4 tokens per tile (2 × 2).
    RgbImage grey(32, 32);
    std::fill(grey.pixels.begin(), grey.pixels.end(), uint8_t(128));
    const std::vector<RgbImage> tiles = {grey, grey};
    const ImageGrid grid{1, 1, 4};
    std::vector<float> w(8, 0.0f);
    w[3] = 0.5f;  // tile r1 c1, bottom-right token
    w[4] = 0.1f;  // global image, top-left token
    const RgbImage sheet = attention_sheet(tiles, grid, w.data());
    const RgbImage plain = tile_sheet(tiles, grid, 16);
    REQUIRE(sheet.width == plain.width);
    REQUIRE(sheet.height == plain.height);
    const auto brightness = [&](int x, int y) { return sheet.at(x, y)[0] + sheet.at(x, y)[1] + sheet.at(x, y)[2]; };
    // Tile 1 sits at (8, 8), the global image at (56, 8) (tile_sheet's 8-pixel gaps).
    const int hot = brightness(8 + 24, 8 + 24), cold = brightness(8 + 4, 8 + 4), warm = brightness(56 + 4, 8 + 4);
    CHECK(hot > warm);
    CHECK(warm > cold);
    CHECK(brightness(56 + 24, 8 + 24) == cold);
    CHECK_THROWS(attention_sheet(tiles, ImageGrid{1, 1, 3}, w.data()));
}

TEST_CASE("bitmap font: Cyrillic letters have glyphs of their own, other scripts are '?'", "[inspect]") {
    const uint8_t ink[3] = {0, 0, 0};
    // The pixels one character leaves on a white cell.
    const auto drawn = [&](const std::string& ch) {
        RgbImage img(kGlyphW, kGlyphH);
        std::fill(img.pixels.begin(), img.pixels.end(), uint8_t(255));
        draw_text(img, 0, 0, ch, ink);
        return img.pixels;
    };
    const auto question = drawn("?");
    const char* letters[] = {"Ж", "ж", "Я", "я", "Ё", "ё", "Щ", "ы", "Б", "П"};
    for (const char* l : letters) {
        INFO(l);
        CHECK(drawn(l) != question);
        CHECK(text_width(l) == kGlyphW);  // one cell per character, not per byte
    }
    CHECK(drawn("Ж") != drawn("ж"));
    CHECK(drawn("П") != drawn("Л"));
    CHECK(drawn("А") == drawn("A"));  // the same shape as the Latin letter
    CHECK(drawn("中") == question);
    CHECK(drawn("\xD0") == question);  // a lone lead byte
    CHECK(text_width("красный круг") == 12 * kGlyphW);
    CHECK(fit_text("синий квадрат", 5 * kGlyphW) == "сини~");
}
