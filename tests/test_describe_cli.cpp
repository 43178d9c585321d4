// `glimpse describe` end to end through the binary, on the golden models: the answer is the
// reference's greedy continuation, several images are answered one after another with a bad
// one reported and skipped, and every kind of bad input is one line with its exit code.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "vision/image.h"
#include "weights/random_model.h"

using namespace glimpse;
using test::run_glimpse;
using test::ScopedEnv;
using test::shell_quote;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return shell_quote(p.string()); }

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST_CASE("describe CLI: SmolVLM answer equals the Hugging Face reference's greedy text", "[describe][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto ref = glimpse::test::read_json(dir / "ref-hf-e2e" / "result.json")["image_prompts"][0];
    // The reference prompt is "<__media__>Describe this image." = the default prompt, image first.
    const std::string model = "-m " + q(dir / "smolvlm-tiny-text-f32.gguf") + " --mmproj " + q(dir / "mmproj-smolvlm-tiny-f32.gguf");
    const auto r = run_glimpse("describe " + q(dir / "images" / ref["image"].get<std::string>()) + " " + model + " -n 16 -t 2");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == ref["greedy"]["text"].get<std::string>() + "\n");
    CHECK(r.err.empty());

    // --json: one object per image with the ids; -v timings on stderr.
    const auto j = run_glimpse("describe " + q(dir / "images" / ref["image"].get<std::string>()) + " " + model +
                               " -n 16 --json -v -p '<__media__>Describe this image.'");
    REQUIRE(j.exit_code == 0);
    REQUIRE(count_lines(j.out) == 1);
    const auto obj = nlohmann::json::parse(j.out);
    CHECK(obj["tokens"] == ref["greedy"]["tokens"]);
    CHECK(obj["image_tokens"].get<int>() == ref["n_image_tokens"].get<int>());
    CHECK(obj["prompt_tokens"].get<int>() == ref["n_tokens"].get<int>());
    CHECK(obj["tiles"].get<int>() == ref["n_tiles"].get<int>());
    CHECK(obj["timings"].contains("encode_ms"));
    CHECK(j.err.find("encode") != std::string::npos);
}

TEST_CASE("describe CLI: several images, a bad one reported and the rest answered", "[describe][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    test::TempDir tmp;
    test::write_file(tmp / "broken.png", std::string("\x89PNG\r\n\x1a\n not really", 20));
    // The mmproj is found beside the text model.
    const auto r = run_glimpse("describe " + q(dir / "images" / "shapes_64x64.png") + " " + q(tmp / "broken.png") + " " +
                               q(tmp / "missing.jpg") + " " + q(dir / "images" / "noise_37x91.jpg") + " -m " +
                               q(dir / "llava-tiny-text-f16.gguf") + " -n 4 --json");
    CHECK(r.exit_code == 2);
    REQUIRE(count_lines(r.out) == 4);
    std::istringstream lines(r.out);
    std::string line;
    std::vector<nlohmann::json> objs;
    while (std::getline(lines, line)) objs.push_back(nlohmann::json::parse(line));
    CHECK(objs[0]["tokens"].size() == 4);
    CHECK(objs[1].contains("error"));
    CHECK(objs[2].contains("error"));
    CHECK(objs[3]["tokens"].size() == 4);
    // stderr: one line per bad file naming it, then the summary.
    CHECK(r.err.find("broken.png") != std::string::npos);
    CHECK(r.err.find("missing.jpg") != std::string::npos);
    CHECK(r.err.find("2 of 4 images failed") != std::string::npos);
    CHECK(count_lines(r.err) == 3);
}

TEST_CASE("describe CLI: bad models and prompts are one line with the right exit code", "[describe][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path smol = golden / "smolvlm-tiny", llava = golden / "llava-tiny";
    const std::string img = q(smol / "images" / "shapes_64x64.png");
    auto one_line = [](const test::RunResult& r) {
        INFO(r.err);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.rfind("glimpse: ", 0) == 0);
    };
    SECTION("two mmproj files beside the model: which one is ambiguous") {
        const auto r = run_glimpse("describe " + img + " -m " + q(smol / "smolvlm-tiny-text-f32.gguf"));
        CHECK(r.exit_code == 1);
        one_line(r);
        CHECK(r.err.find("--mmproj") != std::string::npos);
    }
    SECTION("--mmproj without -m (the default model brings its own)") {
        const auto r = run_glimpse("describe " + img + " --mmproj " + q(smol / "mmproj-smolvlm-tiny-f32.gguf"));
        CHECK(r.exit_code == 1);
        one_line(r);
    }
    SECTION("an mmproj that belongs to another model (projects to another width)") {
        test::TempDir tmp;
        RandomLlamaShape shape;
        shape.name = "narrow";
        shape.n_layers = 1, shape.n_embd = 32, shape.n_heads = 2, shape.n_kv_heads = 2, shape.head_dim = 16;
        shape.n_ff = 64, shape.n_vocab = 300, shape.n_ctx = 256;
        write_random_llama_gguf((tmp / "narrow.gguf").string(), shape, DType::F32, 1);
        const auto r = run_glimpse("describe " + img + " -m " + q(tmp / "narrow.gguf") + " --mmproj " +
                                   q(llava / "mmproj-llava-tiny-f16.gguf"));
        CHECK(r.exit_code == 3);
        one_line(r);
        CHECK(r.err.find("mmproj-llava-tiny-f16.gguf") != std::string::npos);
    }
    SECTION("a text file given as the mmproj") {
        test::TempDir tmp;
        test::write_file(tmp / "mmproj.gguf", std::string("hello"));
        const auto r = run_glimpse("describe " + img + " -m " + q(smol / "smolvlm-tiny-text-f32.gguf") + " --mmproj " +
                                   q(tmp / "mmproj.gguf"));
        CHECK((r.exit_code == 2 || r.exit_code == 3));
        one_line(r);
    }
    SECTION("more image markers than images") {
        const auto r = run_glimpse("describe " + img + " -m " + q(smol / "smolvlm-tiny-text-f32.gguf") + " --mmproj " +
                                   q(smol / "mmproj-smolvlm-tiny-f32.gguf") + " -p '<__media__> and <__media__>' -n 2");
        CHECK(r.exit_code == 2);  // reported per image; the run fails
        CHECK(r.err.find("2 image marker") != std::string::npos);
    }
    SECTION("a context too small for the image tokens") {
        const auto r = run_glimpse("describe " + img + " -m " + q(smol / "smolvlm-tiny-text-f32.gguf") + " --mmproj " +
                                   q(smol / "mmproj-smolvlm-tiny-f32.gguf") + " --ctx 32 -n 2");
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("more than the context of 32") != std::string::npos);
    }
}

TEST_CASE("tokenize --image: the tile grid, image tokens and prompt layout of every golden image", "[describe][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto ref = glimpse::test::read_json(dir / "ref-hf-e2e" / "result.json");
    test::TempDir tmp;
    for (const auto& p : ref["image_prompts"]) {
        INFO(p["image"].get<std::string>());
        const auto r = run_glimpse("tokenize -m " + q(dir / "smolvlm-tiny-text-f32.gguf") + " --mmproj " +
                                   q(dir / "mmproj-smolvlm-tiny-f32.gguf") + " --image " +
                                   q(dir / "images" / p["image"].get<std::string>()) + " --json --grid-png " +
                                   q(tmp / "sheet.png") + " " + shell_quote(p["user"].get<std::string>()));
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        const auto j = nlohmann::json::parse(r.out);
        CHECK(j["rows"] == p["grid"]["rows"]);
        CHECK(j["cols"] == p["grid"]["cols"]);
        CHECK(j["tiles"] == p["n_tiles"]);
        CHECK(j["image_tokens"] == p["n_image_tokens"]);
        CHECK(j["prompt_positions"] == p["n_tokens"]);
        // The sheet: cols tiles + the global image across, rows down, 8-pixel gaps.
        const auto png = test::read_file(tmp / "sheet.png");
        REQUIRE(png.size() > 24);
        const int w = (png[16] << 24) | (png[17] << 16) | (png[18] << 8) | png[19];
        const int h = (png[20] << 24) | (png[21] << 16) | (png[22] << 8) | png[23];
        const int S = 128, cols = p["grid"]["cols"].get<int>(), rows = p["grid"]["rows"].get<int>();
        CHECK(w == 8 + cols * (S + 8) + 8 + S + 8);
        CHECK(h == 8 + rows * (S + 8));
    }
}

TEST_CASE("describe CLI: a damaged BMP or TIFF is one line on stderr, with none of the decoder's own", "[describe][cli]") {
    test::TempDir tmp;
    RgbImage img(40, 30);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 7);
    std::string args;
    for (const char* ext : {"bmp", "tiff"}) {
        const std::vector<uint8_t> bytes = encode_image(img, ext);
        REQUIRE(bytes.size() > 200);
        // Cut inside the pixel data: the header promises rows that are not there.
        const fs::path f = tmp / (std::string("cut.") + ext);
        test::write_file(f, std::vector<uint8_t>(bytes.begin(), bytes.begin() + int64_t(bytes.size() / 2)));
        args += ' ';
        args += q(f);
    }
    const auto r = run_glimpse(std::string("describe") + args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    // One line per file naming it, then the summary; OpenCV's "imdecode_(...)" lines are gone.
    CHECK(count_lines(r.err) == 3);
    CHECK(r.err.find("cut.bmp: truncated or corrupt BMP") != std::string::npos);
    CHECK(r.err.find("cut.tiff: truncated or corrupt TIFF") != std::string::npos);
    CHECK(r.err.find("imdecode") == std::string::npos);
}

TEST_CASE("describe CLI: OpenCV's libraries load only for an image that needs them, and without its module that image is one line",
          "[describe][cli]") {
    if (!can_encode_image("tiff")) {  // a build without OpenCV (GLIMPSE_OPENCV=OFF): no module
        WARN("built without OpenCV: nothing to load");
        return;
    }
    test::TempDir tmp;
    RgbImage img(40, 30);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 5);
    const fs::path png = tmp / "photo.png", bmp = tmp / "photo.bmp";
    save_image(img, png.string());
    save_image(img, bmp.string());
    {
        // The dynamic loader names every library it opens (glibc's LD_DEBUG=files), here into
        // one file per process (the shell's and glimpse's) under ld/.
        const fs::path ld = tmp / "ld";
        fs::create_directories(ld);
        const ScopedEnv trace("LD_DEBUG", "files");
        const ScopedEnv trace_to("LD_DEBUG_OUTPUT", (ld / "trace").c_str());
        auto opened = [&](const fs::path& image) {
            const auto r = run_glimpse("describe " + q(image) + " -n 2");
            CHECK(r.exit_code == 0);
            std::string all;
            for (const auto& f : fs::directory_iterator(ld)) {
                const std::vector<uint8_t> b = test::read_file(f.path());
                all.append(b.begin(), b.end());
                fs::remove(f.path());
            }
            return all;
        };
        const std::string plain = opened(png);
        CHECK(plain.find("libglimpse_opencv") == std::string::npos);
        CHECK(plain.find("libopencv") == std::string::npos);
        CHECK(plain.find("libstb") != std::string::npos);  // (the trace is there)
        const std::string bmp_opened = opened(bmp);
        CHECK(bmp_opened.find("libglimpse_opencv.so") != std::string::npos);
        CHECK(bmp_opened.find("libopencv_imgcodecs") != std::string::npos);
    }
    SECTION("a module that is not there") {
        const fs::path missing = tmp / "nowhere" / "libglimpse_opencv.so";
        const ScopedEnv module("GLIMPSE_OPENCV_MODULE", missing.c_str());
        const auto r = run_glimpse("describe " + q(bmp) + " -n 2");
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.find("photo.bmp: BMP images need OpenCV") != std::string::npos);
        CHECK(r.err.find(missing.string()) != std::string::npos);
        // Images that do not need it are answered as before.
        CHECK(run_glimpse("describe " + q(png) + " -n 2").exit_code == 0);
    }
    SECTION("a module that is not a library") {
        const ScopedEnv module("GLIMPSE_OPENCV_MODULE", png.c_str());
        const auto r = run_glimpse("describe " + q(bmp) + " -n 2");
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.find("photo.bmp: BMP images need OpenCV, whose module did not load: " + png.string()) !=
              std::string::npos);
    }
}
