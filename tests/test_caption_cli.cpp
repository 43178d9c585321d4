// `glimpse caption` through the binary on the golden models: a folder with good, corrupt and
// non-image files gives one line per file (the good ones captioned as the Hugging Face
// reference answers, the bad ones as error lines), --resume after a crash that tore the last
// line finishes the set with every file exactly once, and --shard I/N partitions the set.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "vision/image.h"

// The apps are not part of the glimpse library the tests link, so the input expansion that
// `caption` uses is compiled into this test directly.
#include "apps/caption_inputs.cpp"

using namespace glimpse;
using test::run_glimpse;
using test::shell_quote;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return shell_quote(p.string()); }

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Every line must be a complete JSON object; returns them by "file" and counts repeats.
std::map<std::string, nlohmann::json> lines_by_file(const std::string& text, int& repeats) {
    std::map<std::string, nlohmann::json> by_file;
    std::istringstream in(text);
    std::string line;
    repeats = 0;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);  // throws (fails the test) on a torn line
        repeats += by_file.count(j["file"].get<std::string>()) ? 1 : 0;
        by_file[j["file"].get<std::string>()] = j;
    }
    return by_file;
}

// A folder holding the golden images (one in a subfolder), a corrupt PNG, a text file named
// .jpg, and a README that the folder search must not pick up.
constexpr char kTornPng[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR broken";

void make_image_folder(const fs::path& golden_images, const fs::path& dir) {
    fs::create_directories(dir / "sub");
    fs::copy_file(golden_images / "shapes_64x64.png", dir / "shapes_64x64.png");
    fs::copy_file(golden_images / "gradient_200x120.png", dir / "sub" / "gradient_200x120.png");
    fs::copy_file(golden_images / "noise_37x91.jpg", dir / "noise_37x91.jpg");
    test::write_file(dir / "corrupt.png", std::string(kTornPng, sizeof kTornPng - 1));
    test::write_file(dir / "sub" / "not_an_image.jpg", std::string("hello, I am text"));
    test::write_file(dir / "README.txt", std::string("not picked up"));
}

}  // namespace

TEST_CASE("caption inputs: folders, globs, lists, shards", "[caption]") {
    GOLDEN_OR_SKIP(golden);
    test::TempDir tmp;
    make_image_folder(golden / "smolvlm-tiny" / "images", tmp / "imgs");
    const std::string base = (tmp / "imgs").string();

    auto ins = app::expand_caption_inputs({base});
    REQUIRE(ins.size() == 5);  // README.txt is not an image file
    for (const auto& in : ins) CHECK(in.error.empty());
    CHECK(ins[0].path == base + "/corrupt.png");  // sorted

    test::write_file(tmp / "list.txt", "# comment\n\n" + base + "/noise_37x91.jpg\n" + base + "/*.png\n" + base +
                                           "/missing.png\n" + base + "/nothing*.gif\n");
    ins = app::expand_caption_inputs({"@" + (tmp / "list.txt").string(), base + "/noise_37x91.jpg"});
    REQUIRE(ins.size() == 5);  // noise, corrupt, shapes, missing, the empty pattern; noise once
    CHECK(ins[0].path == base + "/noise_37x91.jpg");
    CHECK(ins[1].path == base + "/corrupt.png");
    CHECK(ins[2].path == base + "/shapes_64x64.png");
    CHECK(ins[3].error.empty());  // a missing file fails when it is read
    CHECK(ins[4].error.find("no file matches") != std::string::npos);

    uint32_t i = 9, n = 9;
    app::parse_shard("2/5", i, n);
    CHECK((i == 2 && n == 5));
    for (const char* bad : {"5/5", "1/0", "x/2", "1", "/3", "-1/3"}) CHECK_THROWS(app::parse_shard(bad, i, n));
    // The shard of a path depends on the path alone and every shard gets some of 100 paths.
    std::vector<int> counts(4);
    for (int k = 0; k < 100; ++k) ++counts[app::shard_of("img" + std::to_string(k) + ".jpg", 4)];
    for (int c : counts) CHECK(c > 10);
}

TEST_CASE("caption CLI: a folder with bad files, golden captions, resume after a torn line", "[caption][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto ref = nlohmann::json::parse(slurp(dir / "ref-hf-e2e" / "result.json"))["image_prompts"][0];
    REQUIRE(ref["image"] == "shapes_64x64.png");
    test::TempDir tmp;
    make_image_folder(dir / "images", tmp / "imgs");
    const std::string model = " -m " + q(dir / "smolvlm-tiny-text-f32.gguf") + " --mmproj " +
                              q(dir / "mmproj-smolvlm-tiny-f32.gguf") + " -n 16 -t 2";
    const fs::path out = tmp / "out.jsonl";

    auto r = run_glimpse("caption " + q(tmp / "imgs") + " -o " + q(out) + model);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find("3 captioned, 2 failed") != std::string::npos);
    const std::string first = slurp(out);
    int repeats = 0;
    auto lines = lines_by_file(first, repeats);
    CHECK(repeats == 0);
    REQUIRE(lines.size() == 5);
    const std::string imgs = (tmp / "imgs").string();
    const auto& shapes = lines[imgs + "/shapes_64x64.png"];
    // The reference's greedy answer for this image and prompt (trimmed, as captions are).
    std::string want = ref["greedy"]["text"].get<std::string>();
    want.erase(0, want.find_first_not_of(' '));
    CHECK(shapes["caption"] == want);
    CHECK(shapes["tokens"] == 16);
    CHECK(shapes["ms"].get<double>() > 0);
    CHECK(lines[imgs + "/corrupt.png"].contains("error"));
    CHECK(lines[imgs + "/sub/not_an_image.jpg"]["error"].get<std::string>().find("not an image") != std::string::npos);
    CHECK(lines[imgs + "/noise_37x91.jpg"].contains("caption"));

    // A crash in the middle of the fourth line: three whole lines and a torn one remain.
    size_t cut = 0;
    for (int k = 0; k < 3; ++k) cut = first.find('\n', cut) + 1;
    const size_t fourth_end = first.find('\n', cut);
    test::write_file(out, first.substr(0, cut + (fourth_end - cut) / 2));
    r = run_glimpse("caption " + q(tmp / "imgs") + " -o " + q(out) + model + " --resume");
    CHECK(r.exit_code == (first.substr(cut).find("\"error\"") == std::string::npos ? 0 : 2));
    CHECK(r.err.find("3 already done") != std::string::npos);
    const std::string resumed = slurp(out);
    auto after = lines_by_file(resumed, repeats);
    CHECK(repeats == 0);
    for (auto* m : {&lines, &after})
        for (auto& [file, j] : *m) j.erase("ms");  // times differ between runs
    CHECK(after == lines);  // the same answers, every file once, no torn line left

    // Nothing left to do: the file is unchanged and the run succeeds.
    r = run_glimpse("caption " + q(tmp / "imgs") + " -o " + q(out) + model + " --resume");
    CHECK(r.exit_code == 0);
    CHECK(slurp(out) == resumed);
}

TEST_CASE("caption CLI: shards cover the set exactly once; usage errors", "[caption][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    test::TempDir tmp;
    make_image_folder(dir / "images", tmp / "imgs");
    const std::string model = " -m " + q(dir / "llava-tiny-text-f16.gguf") + " -n 2 -t 2";
    std::map<std::string, int> seen;
    for (int s = 0; s < 3; ++s) {
        const fs::path out = tmp / ("shard" + std::to_string(s) + ".jsonl");
        const auto r = run_glimpse("caption " + q(tmp / "imgs") + " --shard " + std::to_string(s) + "/3 -o " + q(out) + model);
        INFO(r.err);
        CHECK((r.exit_code == 0 || r.exit_code == 2));
        int repeats = 0;
        for (const auto& [file, j] : lines_by_file(slurp(out), repeats)) ++seen[file];
    }
    REQUIRE(seen.size() == 5);
    for (const auto& [file, n] : seen) CHECK(n == 1);

    // --format txt: IMAGE.txt beside each good image, nothing for the bad ones; a missing file
    // named directly fails without stopping the run.
    const fs::path imgs = tmp / "imgs";
    auto r = run_glimpse("caption " + q(imgs) + " " + q(tmp / "missing.png") + " --format txt" + model);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("missing.png") != std::string::npos);
    CHECK(r.err.find("3 captioned, 3 failed") != std::string::npos);
    CHECK(fs::exists(imgs / "shapes_64x64.txt"));
    CHECK(fs::exists(imgs / "sub" / "gradient_200x120.txt"));
    CHECK(!fs::exists(imgs / "corrupt.txt"));
    CHECK(!slurp(imgs / "noise_37x91.txt").empty());
    r = run_glimpse("caption " + q(imgs) + " --format txt --resume" + model);  // only the bad ones again
    CHECK(r.err.find("0 captioned, 2 failed, 3 already done") != std::string::npos);

    CHECK(run_glimpse("caption " + q(tmp / "imgs") + " --shard 3/3" + model).exit_code == 1);
    CHECK(run_glimpse("caption " + q(tmp / "imgs") + " --resume" + model).exit_code == 1);  // no -o
    r = run_glimpse("caption " + q(tmp / "imgs") + " -n 2 --mmproj x.gguf");  // --mmproj without -m
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("--mmproj needs -m") != std::string::npos);
}

TEST_CASE("caption CLI: killed with SIGKILL again and again, --resume still covers every file once",
          "[caption][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    test::TempDir tmp;
    fs::create_directories(tmp / "imgs");
    const char* names[] = {"shapes_64x64.png", "gradient_200x120.png", "noise_37x91.jpg"};
    for (int i = 0; i < 30; ++i)
        fs::copy_file(dir / "images" / names[i % 3], tmp / "imgs" / ("img" + std::to_string(100 + i) + "_" + names[i % 3]));
    for (int i = 0; i < 5; ++i) test::write_file(tmp / "imgs" / ("bad" + std::to_string(i) + ".jpg"), std::string("junk"));
    const fs::path out = tmp / "out.jsonl";
    const std::string cmd = shell_quote(GLIMPSE_BINARY) + " caption " + q(tmp / "imgs") + " -o " + q(out) + " -m " +
                            q(dir / "llava-tiny-text-f16.gguf") + " -n 2 -t 2 --resume >/dev/null 2>&1";
    // SIGKILL after a growing delay, until a run finishes by itself (or 25 tries, then a plain run).
    int kills = 0;
    for (int attempt = 0; attempt < 25; ++attempt) {
        const std::string delay = std::to_string(0.15 + 0.1 * attempt);
        const int status = std::system(("timeout -s KILL " + delay + " " + cmd).c_str());
        if (WIFEXITED(status) && WEXITSTATUS(status) == 137) ++kills;
        else break;
    }
    const int status = std::system(cmd.c_str());
    CHECK(WEXITSTATUS(status) == 0);  // nothing was left to do
    WARN("caption was killed " << kills << " times before finishing");

    int repeats = 0;
    const auto lines = lines_by_file(slurp(out), repeats);  // every line whole
    CHECK(repeats == 0);
    CHECK(lines.size() == 35);
    int errors = 0;
    for (const auto& [file, j] : lines) errors += j.contains("error") ? 1 : 0;
    CHECK(errors == 5);
}

// Pictures of the default model's world (1 to 3 discs or squares in a 3x3 grid on a light
// background), different enough that the captions differ in content and length.
namespace {
RgbImage scene_picture(uint32_t seed) {
    auto next = [&] {
        seed = seed * 1664525u + 1013904223u;
        return seed >> 8;
    };
    RgbImage img(256, 256);
    const uint8_t bg = uint8_t(225 + next() % 30);
    std::fill(img.pixels.begin(), img.pixels.end(), bg);
    const uint8_t colours[4][3] = {{220, 30, 30}, {30, 160, 40}, {30, 60, 220}, {240, 210, 20}};
    const int n = 1 + int(next() % 3);
    for (int k = 0; k < n; ++k) {
        const int cx = int(next() % 3) * 85 + 42, cy = int(next() % 3) * 85 + 42, r = next() % 2 ? 34 : 18;
        const bool disc = next() % 2;
        const uint8_t* c = colours[next() % 4];
        for (int y = cy - r; y < cy + r; ++y)
            for (int x = cx - r; x < cx + r; ++x)
                if (!disc || (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r)
                    for (int ch = 0; ch < 3; ++ch) img.row(y)[size_t(x) * 3 + size_t(ch)] = c[ch];
    }
    return img;
}
}  // namespace

TEST_CASE("caption CLI: --batch 4, in one lane or several, gives exactly the captions of --batch 1", "[caption][cli]") {
    test::TempDir tmp;
    fs::create_directories(tmp / "imgs");
    for (uint32_t i = 0; i < 11; ++i)  // not a multiple of 4: the last batch is partial
        save_image(scene_picture(i * 7919u + 1u), (tmp / "imgs" / ("scene" + std::to_string(10 + i) + ".png")).string());
    test::write_file(tmp / "imgs" / "broken.png", std::string("\x89PNG\r\n\x1a\n not really", 20));
    // --lanes 0: the default model is small, so 2 lanes on -t 2; --lanes 1: every op shared by
    // both threads; --lanes 3 on --batch 5: lanes of 2, 2 and 1 images.
    const std::vector<std::string> runs_args = {"--batch 1", "--batch 4", "--batch 4 --lanes 1", "--batch 5 --lanes 3 -v"};
    std::map<std::string, std::map<std::string, nlohmann::json>> runs;
    for (const std::string& args : runs_args) {
        const fs::path out = tmp / ("out" + std::to_string(runs.size()) + ".jsonl");
        const auto r = run_glimpse("caption " + q(tmp / "imgs") + " -o " + q(out) + " -n 24 -t 2 " + args);
        INFO(args << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("11 captioned, 1 failed") != std::string::npos);
        if (args.find("-v") != std::string::npos) CHECK(r.err.find("batch 5, 2 lanes") != std::string::npos);  // -t 2 caps it
        int repeats = 0;
        runs[args] = lines_by_file(slurp(out), repeats);
        CHECK(repeats == 0);
        for (auto& [file, j] : runs[args]) j.erase("ms");
    }
    const auto& one = runs["--batch 1"];
    REQUIRE(one.size() == 12);
    for (const std::string& args : runs_args) {
        INFO(args);
        CHECK(runs[args] == one);
    }
    // The captions differ in length, so sequences left the batched decode at different steps.
    std::set<int> lengths;
    for (const auto& [file, j] : one)
        if (j.contains("tokens")) lengths.insert(j["tokens"].get<int>());
    CHECK(lengths.size() >= 2);
    CHECK(one.at((tmp / "imgs" / "broken.png").string()).contains("error"));
}

TEST_CASE("bench --caption: batch 1 and batch N over generated pictures, as JSON", "[caption][cli][bench]") {
    const auto r = run_glimpse("bench --caption --images 5 --batch 2 -n 6 -r 1 -t 2 --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["images"] == 5);
    CHECK(j["batch"] == 2);
    CHECK(j["lanes"] == 2);  // the default model on -t 2: a lane per thread
    CHECK(j["batch1_images_per_min"].get<double>() > 0);
    CHECK(j["batchN_images_per_min"].get<double>() > 0);
    CHECK(j["speedup"].get<double>() == Approx(j["batchN_images_per_min"].get<double>() /
                                               j["batch1_images_per_min"].get<double>()));
    CHECK(!j.contains("vs_llama_cpp"));  // only for the random SmolVLM-256M pair
}
