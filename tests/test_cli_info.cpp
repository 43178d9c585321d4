// `glimpse info` end to end: the real binary on real files (golden models, files written by
// the writers, hostile files), checking output and exit codes (DESIGN.md).
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/fp16.h"
#include "tests/helpers.h"
#include "weights/gguf.h"
#include "weights/safetensors.h"

using namespace glimpse;
using namespace glimpse::test;
namespace fs = std::filesystem;

namespace {

// One line on stderr that names the file: the contract for every error.
void check_one_line_error(const RunResult& r, const std::string& path_fragment) {
    INFO("stderr: " << r.err);
    CHECK(r.err.find(path_fragment) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.rfind("glimpse: ", 0) == 0);
}

std::vector<uint8_t> small_gguf() {
    GgufWriter w;
    w.set_str("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    std::vector<float> data(64 * 3, 0.5f);
    w.add_tensor("blk.0.attn_q.weight", DType::F32, {64, 3, 1, 1}, 2, data.data(), data.size() * 4);
    w.add_tensor("output_norm.weight", DType::F32, {64, 1, 1, 1}, 1, data.data(), 64 * 4);
    return w.to_bytes();
}

}  // namespace

TEST_CASE("info prints every golden GGUF file and agrees with its manifest", "[cli][info][golden]") {
    GOLDEN_OR_SKIP(golden);
    int files = 0;
    for (const char* model : {"smolvlm-tiny", "llava-tiny"}) {
        std::ifstream mf(golden / model / "manifest.json");
        const auto manifest = nlohmann::json::parse(mf);
        for (const auto& [name, entry] : manifest["gguf_files"].items()) {
            const fs::path p = golden / model / name;
            const RunResult text = run_glimpse("info " + shell_quote(p.string()));
            INFO(p << "\n" << text.err);
            REQUIRE(text.exit_code == 0);
            CHECK(text.out.find("GGUF v3") != std::string::npos);
            const RunResult js = run_glimpse("info --json " + shell_quote(p.string()));
            REQUIRE(js.exit_code == 0);
            const auto doc = nlohmann::json::parse(js.out);
            const auto& expected = entry["tensors"];
            REQUIRE(doc["tensors"].size() == expected.size());
            for (size_t i = 0; i < expected.size(); ++i) {
                CHECK(doc["tensors"][i]["name"] == expected[i]["name"]);
                CHECK(doc["tensors"][i]["type"] == expected[i]["type"]);
                CHECK(doc["tensors"][i]["shape"] == expected[i]["shape_ggml"]);
                // every tensor is printed in the text table too
                CHECK(text.out.find(expected[i]["name"].get<std::string>()) != std::string::npos);
            }
            const std::string role = entry["role"];
            CHECK(doc["architecture"] == (role == "text" ? "llama" : "clip"));
            ++files;
        }
    }
    CHECK(files == 8);
}

TEST_CASE("info reads a llama2.c checkpoint", "[cli][info][golden]") {
    GOLDEN_OR_SKIP(golden);
    const RunResult r = run_glimpse("info --json " + shell_quote((golden / "stories260k" / "stories260K.bin").string()));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto doc = nlohmann::json::parse(r.out);
    CHECK(doc["format"] == "llama2c");
    CHECK(doc["config"]["dim"] == 64);
    CHECK(doc["config"]["n_kv_heads"] == 4);
    CHECK(doc["config"]["vocab_size"] == 512);
}

TEST_CASE("info reads safetensors files and Hugging Face folders", "[cli][info]") {
    TempDir dir;
    std::vector<uint16_t> half(4 * 6);
    for (size_t i = 0; i < half.size(); ++i) half[i] = f32_to_fp16(float(i));
    Tensor t;
    t.name = "model.layers.0.mlp.up_proj.weight";
    t.dtype = DType::F16;
    t.n_dims = 2;
    t.ne = {6, 4, 1, 1};  // HF shape [4, 6]
    t.nb = contiguous_strides(DType::F16, t.ne);
    t.data = half.data();
    const fs::path st = dir / "model.safetensors";
    write_safetensors(st.string(), {t}, {{"format", "pt"}});

    RunResult r = run_glimpse("info " + shell_quote(st.string()));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("safetensors") != std::string::npos);
    CHECK(r.out.find("[4, 6]") != std::string::npos);  // outermost first, as the file states it

    write_file(dir / "config.json", std::string(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                    "hidden_size": 6})"));
    r = run_glimpse("info --json " + shell_quote(dir.path().string()));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto doc = nlohmann::json::parse(r.out);
    CHECK(doc["architecture"] == "LlamaForCausalLM");
    CHECK(doc["tensors"][0]["shape"] == nlohmann::json::array({4, 6}));
    CHECK(doc["tensors"][0]["type"] == "F16");
}

TEST_CASE("info: usage errors, missing files and hostile files", "[cli][info][hostile]") {
    TempDir dir;
    SECTION("no file is a usage error") { CHECK(run_glimpse("info").exit_code == 1); }
    SECTION("unknown subcommand is a usage error") { CHECK(run_glimpse("frobnicate").exit_code == 1); }
    SECTION("missing file: exit 2") {
        const RunResult r = run_glimpse("info " + shell_quote((dir / "nope.gguf").string()));
        CHECK(r.exit_code == 2);
        check_one_line_error(r, "nope.gguf");
    }
    SECTION("folder without config.json: exit 2") {
        const RunResult r = run_glimpse("info " + shell_quote(dir.path().string()));
        CHECK(r.exit_code == 2);
        check_one_line_error(r, dir.path().filename().string());
    }
    SECTION("unrecognised file: exit 3") {
        write_file(dir / "photo.jpg", std::string("\xff\xd8\xff\xe0 not a model"));
        const RunResult r = run_glimpse("info " + shell_quote((dir / "photo.jpg").string()));
        CHECK(r.exit_code == 3);
        check_one_line_error(r, "photo.jpg");
    }
    SECTION("every truncation of a GGUF file: exit 3, one line") {
        const auto bytes = small_gguf();
        const fs::path p = dir / "cut.gguf";
        // Every third header prefix (a stride prime to 4 and 8: cuts at every offset modulo the
        // header's field sizes), then a sample of the data section. Every
        // single prefix goes through the loader in-process ("gguf: truncation at every byte");
        // here it is the command's one line and exit code, about 0.35 s a run under ASan.
        for (size_t n = 4; n < bytes.size(); n += (n < 400 ? 3 : 97)) {
            write_file(p, std::vector<uint8_t>(bytes.begin(), bytes.begin() + long(n)));
            const RunResult r = run_glimpse("info " + shell_quote(p.string()));
            INFO("prefix " << n);
            REQUIRE(r.exit_code == 3);
            check_one_line_error(r, "cut.gguf");
        }
    }
    SECTION("a safetensors header that lies about a tensor's size: exit 3") {
        std::string header = R"({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}})";
        // u64 header length, the header, 32 bytes of data (too few for a 4x4 F32 tensor)
        const uint64_t n = header.size();
        std::vector<uint8_t> bytes(8 + header.size() + 32, 0);
        std::memcpy(bytes.data(), &n, 8);
        std::memcpy(bytes.data() + 8, header.data(), header.size());
        write_file(dir / "lies.safetensors", bytes);
        const RunResult r = run_glimpse("info " + shell_quote((dir / "lies.safetensors").string()));
        CHECK(r.exit_code == 3);
        check_one_line_error(r, "lies.safetensors");
    }
}
