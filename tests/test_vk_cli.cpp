// --device end to end through the binary (apps/device_option.h, apps/bench_device.h): the
// default model describes an example scene the same on lavapipe as on the CPU, the golden
// models answer the same on both (and SmolVLM's answer is the Hugging Face reference's), -v
// names the device of each tower, a device that does not exist is exit 4 with one line, and
// `bench --device vulkan` reports its figures. Skipped, saying so, without a Vulkan device.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "core/vk_ops.h"
#include "tests/test_vk_helpers.h"
#include "text/llama_model.h"

using namespace glimpse;
using test::run_glimpse;
using test::ScopedEnv;
using test::shell_quote;
namespace fs = std::filesystem;

namespace {

const fs::path kSource = GLIMPSE_SOURCE_DIR;

std::string q(const fs::path& p) { return shell_quote(p.string()); }

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

// Runs `args` with --device cpu and with --device vulkan plus `vulkan_flags`: both succeed and
// print the same answer. Returns the Vulkan run (its stderr for the -v checks).
glimpse::test::RunResult same_answer_on_vulkan(const std::string& args, const std::string& vulkan_flags = "") {
    const auto cpu = run_glimpse(args + " --device cpu");
    const auto gpu = run_glimpse(args + " --device vulkan" + vulkan_flags);
    INFO(gpu.err);
    REQUIRE(cpu.exit_code == 0);
    REQUIRE(gpu.exit_code == 0);
    CHECK(gpu.out == cpu.out);
    return gpu;
}

}  // namespace

TEST_CASE("vulkan CLI: --device vulkan: describe with the default model prints the CPU's caption", "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const std::string image = q(kSource / "examples" / "scene_2.png");
    const auto cpu = run_glimpse("describe " + image + " --device cpu -t 2");
    REQUIRE(cpu.exit_code == 0);
    REQUIRE(cpu.out.size() > 10);
    const auto gpu = run_glimpse("describe " + image + " --device vulkan -v");
    INFO(gpu.err);
    REQUIRE(gpu.exit_code == 0);
    CHECK(gpu.out == cpu.out);
    // -v: the device and why, where each tower runs, the stage timings.
    CHECK(gpu.err.find("device: vulkan device") != std::string::npos);
    CHECK(gpu.err.find("text tower on vulkan device") != std::string::npos);
    CHECK(gpu.err.find("vision tower + projector on vulkan device") != std::string::npos);
    CHECK(gpu.err.find("encode") != std::string::npos);
    // ... and the GPU time of the image's dispatches by shader (timestamp queries).
    if (ctx->timestamp_bits() > 0) {
        CHECK(gpu.err.find("device: GPU time ") != std::string::npos);
        CHECK(gpu.err.find("matmul_f32 ") != std::string::npos);
    }
    // auto never picks a software Vulkan device: -v says the CPU runs both towers.
    const auto aut = run_glimpse("describe " + image + " --device auto -v");
    REQUIRE(aut.exit_code == 0);
    if (ctx->info().type == vk::DeviceType::Cpu) {
        CHECK(aut.err.find("text tower on the cpu") != std::string::npos);
        CHECK(aut.out == cpu.out);
    }
}

TEST_CASE("vulkan CLI: ask -v on the device prints the GPU time by shader per image and per turn", "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    if (ctx->timestamp_bits() == 0) {
        WARN("SKIPPED: the compute queue of " << ctx->label() << " has no timestamps");
        return;
    }
    const std::string image = q(kSource / "examples" / "scene_2.png");
    const auto gpu = same_answer_on_vulkan("ask " + image + " -p 'How many shapes are there?'", " -v");
    INFO(gpu.err);
    // One line after the image (the encoder's shaders), one after the turn (the decoder's).
    const auto image_at = gpu.err.find("image ");
    const auto turn_at = gpu.err.find("turn 1:");
    REQUIRE(image_at != std::string::npos);
    REQUIRE(turn_at != std::string::npos);
    const auto first = gpu.err.find("device: GPU time ", image_at);
    REQUIRE(first != std::string::npos);
    CHECK(first < turn_at);
    CHECK(gpu.err.find("im2col", first) < turn_at);
    CHECK(gpu.err.find("device: GPU time ", turn_at) != std::string::npos);
}

TEST_CASE("vulkan CLI: --device vulkan:99 and bad specs are one-line errors with their exit codes", "[vulkan][vk_cli][cli]") {
    const std::string image = q(kSource / "examples" / "scene_2.png");
    const auto r = run_glimpse("describe " + image + " --device vulkan:99");
    CHECK(r.exit_code == 4);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("no device 99") != std::string::npos);
    CHECK(r.out.empty());
    const auto g = run_glimpse("generate -m " + q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf") +
                               " -p hi --device gpu");
    CHECK(g.exit_code == 1);
    CHECK(count_lines(g.err) == 1);
}

TEST_CASE("vulkan CLI: --device vulkan: the golden models answer as on the CPU", "[vulkan][vk_cli][cli][golden]") {
    VK_OR_SKIP(ctx);
    GOLDEN_OR_SKIP(golden);
    const fs::path smol = golden / "smolvlm-tiny", llava = golden / "llava-tiny";
    {
        std::ifstream in(smol / "ref-hf-e2e" / "result.json");
        const auto ref = nlohmann::json::parse(in)["image_prompts"][0];
        const auto r = run_glimpse("describe " + q(smol / "images" / ref["image"].get<std::string>()) + " -m " +
                                   q(smol / "smolvlm-tiny-text-f32.gguf") + " --mmproj " +
                                   q(smol / "mmproj-smolvlm-tiny-f32.gguf") + " -n 16 --device vulkan");
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.out == ref["greedy"]["text"].get<std::string>() + "\n");
    }
    {  // the text tower alone, through its chat template
        std::ifstream in(smol / "ref" / "result.json");
        const auto ref = nlohmann::json::parse(in)["text_prompts"][0];
        const auto r = run_glimpse("generate -m " + q(smol / "smolvlm-tiny-text-f32.gguf") +
                                   " -p 'What is the capital of France?' -n 16 --device vulkan");
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.out == ref["greedy"]["text"].get<std::string>() + "\n");
    }
    {  // llama2.c's stories260K: the first 60 tokens of its greedy story
        std::ifstream in(golden / "stories260k" / "expected.json");
        const std::string want = nlohmann::json::parse(in)["prompts"]["Once upon a time"].get<std::string>();
        const auto r = run_glimpse("generate -m " + q(golden / "stories260k" / "stories260K.bin") +
                                   " -p 'Once upon a time' -n 60 --device vulkan");
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        std::string got = "Once upon a time" + r.out;
        if (!got.empty() && got.back() == '\n') got.pop_back();
        CHECK(got.size() > 100);
        CHECK(want.compare(0, got.size(), got) == 0);
    }
    // LLaVA (CLIP with a class token, the MLP projector), F16 weights: the same tokens.
    const std::string args = "describe " + q(llava / "images" / "shapes_64x64.png") + " -m " +
                             q(llava / "llava-tiny-text-f16.gguf") + " -n 8 --json --device ";
    const auto cpu = run_glimpse(args + "cpu");
    const auto gpu = run_glimpse(args + "vulkan");
    INFO(gpu.err);
    REQUIRE(cpu.exit_code == 0);
    REQUIRE(gpu.exit_code == 0);
    CHECK(nlohmann::json::parse(gpu.out)["tokens"] == nlohmann::json::parse(cpu.out)["tokens"]);
}

namespace {

// bench --json --profile of the tiny text model on the device, 3 decode steps.
nlohmann::json bench_tiny_text(const std::string& model) {
    const auto b = run_glimpse("bench --device vulkan -m " + model + " -p 4 -n 3 -r 1 --json --profile");
    INFO(b.err);
    REQUIRE(b.exit_code == 0);
    return nlohmann::json::parse(b.out);
}

// An on/off switch of the decoder's recording: with `env` =1 and =0 the tiny text model gives
// the CPU's answer to `prompt` on the device, bench's JSON field `key` says which ran, and the
// decode profile holds `shader` exactly when the switch is on (`shader_when_on`) or off.
void switch_gives_cpu_answer(const char* env, const std::string& prompt, const char* key, const char* shader,
                             bool shader_when_on) {
    const std::string model = q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf");
    for (const bool on : {true, false}) {
        INFO(env << "=" << on);
        const ScopedEnv e(env, on ? "1" : "0");
        same_answer_on_vulkan("generate -m " + model + " -p '" + prompt + "' -n 12");
        const auto j = bench_tiny_text(model);
        CHECK(j[key].get<bool>() == on);
        if (!j["profile"].is_null()) CHECK(j["profile"]["decode"]["shaders"].contains(shader) == (on == shader_when_on));
    }
}

// More than 8 tokens: the prefill takes the tiled matmul and rope_qkv, decode the matvec and attention_qkv.
const char* const kLongPrompt = "a big red ball rolled down the long green hill";

}  // namespace

TEST_CASE("vulkan CLI: caption --device vulkan writes the CPU's captions, stepped together or one by one, picked on "
          "the device or by the host",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const test::TempDir dir;
    // file -> (caption, tokens) of one caption run over the examples, `batch` images a batch.
    auto captions = [&](const std::string& device, const std::string& max_tokens, const std::string& batch) {
        const fs::path out = dir / ("captions-" + device + ".jsonl");
        fs::remove(out);
        const auto r = run_glimpse("caption " + q(kSource / "examples") + " -o " + q(out) + " --batch " + batch +
                                   " -n " + max_tokens + " -v --device " + device);
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        // -v ends with the device's GPU time by shader.
        if (device == "vulkan" && ctx->timestamp_bits() > 0) CHECK(r.err.find("device: GPU time ") != std::string::npos);
        std::map<std::string, std::pair<std::string, int>> by_file;
        std::ifstream in(out);
        for (std::string line; std::getline(in, line);) {
            const auto j = nlohmann::json::parse(line);
            by_file[j["file"].get<std::string>()] = {j["caption"].get<std::string>(), j["tokens"].get<int>()};
        }
        return by_file;
    };
    for (const char* max_tokens : {"12", "64"}) {  // cut by the limit, or ended by the model
        INFO("-n " << max_tokens);
        const auto want = captions("cpu", max_tokens, "3");
        CHECK(want.size() == 6);
        // Three a batch: each step of a batch's captions one pass on the device, their tokens
        // picked there (decode_greedy_batch), or by the host from their logits (decode_batch;
        // only at -n 12, to spare the test's time). One a batch: each caption's tokens picked on
        // the device (decode_greedy), or by the host.
        for (const char* batch : {"3", "1"})
            for (const char* on : {"1", "0"}) {
                if (std::string(batch) == "3" && std::string(on) == "0" && std::string(max_tokens) != "12") continue;
                INFO("--batch " << batch << ", GLIMPSE_VK_GREEDY_PICK=" << on);
                const ScopedEnv e("GLIMPSE_VK_GREEDY_PICK", on);
                CHECK(captions("vulkan", max_tokens, batch) == want);
            }
    }
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_FUSE_NORMS=1 and 0 give the CPU's answer, and bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    switch_gives_cpu_answer("GLIMPSE_VK_FUSE_NORMS", "a big red", "fuse_norms", "rms_norm", false);
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_FUSE_QKV=1 and 0 give the CPU's answer, and bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    CHECK(bench_tiny_text(q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf"))["fuse_qkv"].get<bool>());
    // Apart, decode rotates Q and K with rope; stacked, inside its attention.
    switch_gives_cpu_answer("GLIMPSE_VK_FUSE_QKV", kLongPrompt, "fuse_qkv", "rope", false);
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_FUSE_ROPE=1 and 0 give the CPU's answer, and bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    CHECK(bench_tiny_text(q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf"))["fuse_rope"].get<bool>());
    switch_gives_cpu_answer("GLIMPSE_VK_FUSE_ROPE", kLongPrompt, "fuse_rope", "attention_qkv", true);
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_GREEDY_PICK=1 and 0 give the CPU's answer, and bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    CHECK(bench_tiny_text(q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf"))["greedy_pick"].get<bool>());
    switch_gives_cpu_answer("GLIMPSE_VK_GREEDY_PICK", "a big red", "greedy_pick", "greedy_pick", true);
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_RECORD_AHEAD=0 and GLIMPSE_VK_PROFILE_DETAIL=1: bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const std::string model = q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf");
    // By default, the second and third steps are recorded while the device runs the one before,
    // and the profile names shaders alone.
    for (const char* sw : {"", "GLIMPSE_VK_RECORD_AHEAD", "GLIMPSE_VK_PROFILE_DETAIL"}) {
        INFO("switch: " << (*sw ? sw : "none"));
        const std::string name = sw;
        std::optional<ScopedEnv> env;
        if (!name.empty()) env.emplace(sw, name == "GLIMPSE_VK_RECORD_AHEAD" ? "0" : "1");
        const auto j = bench_tiny_text(model);
        CHECK(j["record_ahead"].get<bool>() == (name != "GLIMPSE_VK_RECORD_AHEAD"));
        if (j["profile"].is_null()) continue;  // no timestamps on this device
        const auto& decode = j["profile"]["decode"];
        bool by_shape = false;
        for (const auto& [shader, t] : decode["shaders"].items()) by_shape = by_shape || shader.find(" [") != std::string::npos;
        CHECK(by_shape == (name == "GLIMPSE_VK_PROFILE_DETAIL"));
        CHECK((decode["record_ahead_ms"].get<double>() > 0) == (name != "GLIMPSE_VK_RECORD_AHEAD"));
    }
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_MATMUL_LARGE_TILES=1 and 0 give the CPU's answer, and bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const std::string model = q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf");
    CHECK(bench_tiny_text(model)["matmul_tiles"] == "by shape");
    for (const char* large : {"1", "0"}) {
        INFO("GLIMPSE_VK_MATMUL_LARGE_TILES=" << large);
        const ScopedEnv env("GLIMPSE_VK_MATMUL_LARGE_TILES", large);
        // A prompt of more than 8 tokens: its prefill takes the tiled kernel.
        same_answer_on_vulkan("generate -m " + model + " -p 'a big red ball rolled down the long green hill' -n 6");
        CHECK(bench_tiny_text(model)["matmul_tiles"] == (large[0] == '1' ? "128" : "64"));
    }
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_COOP_MATMUL=1 gives the CPU's answer, and bench says whether tensor cores ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const std::string model = q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf");
    // Off by default; asked for, it runs where the device can (not on lavapipe), and the rest
    // takes the tiled kernel as before.
    CHECK_FALSE(bench_tiny_text(model)["coop_matmul"].get<bool>());
    CHECK_FALSE(bench_tiny_text(model)["coop_attention"].get<bool>());
    for (const char* on : {"1"}) {  // (=0 is the default, above and in every other test)
        INFO("GLIMPSE_VK_COOP_MATMUL=" << on);
        const ScopedEnv env("GLIMPSE_VK_COOP_MATMUL", on);
        same_answer_on_vulkan("generate -m " + model + " -p '" + kLongPrompt + "' -n 6");
        const auto b = run_glimpse("bench --device vulkan -m " + model + " -p 12 -n 3 -r 1 --json --profile");
        REQUIRE(b.exit_code == 0);
        const auto j = nlohmann::json::parse(b.out);
        const bool ran = on[0] == '1' && j["coop_matmul_supported"].get<bool>();
        CHECK(j["coop_matmul"].get<bool>() == ran);
        CHECK(j["coop_matmul_supported"].get<bool>() == ctx->coop_matmul_supported());
        CHECK(j["coop_attention"].get<bool>() == ran);  // GLIMPSE_VK_COOP_ATTENTION unset: with the matmul
        if (!j["profile"].is_null()) CHECK(j["profile"]["prefill"]["shaders"].contains("matmul_coop_f32") == ran);
    }
}

TEST_CASE("vulkan CLI: GLIMPSE_VK_ATTENTION_BLOCKED and GLIMPSE_VK_VIT_TILES_AT_ONCE =1 and =0 give the CPU's "
          "answer, and bench says which ran",
          "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const std::string model = q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf");
    const std::string image = q(kSource / "examples" / "scene_2.png");
    const auto cpu = run_glimpse("describe " + image + " --device cpu");
    REQUIRE(cpu.exit_code == 0);
    const auto by_shape = bench_tiny_text(model);
    CHECK(by_shape["attention_blocked"] == "by shape");
    CHECK(by_shape["vit_tiles_at_once"] == (ctx->info().type != vk::DeviceType::Cpu));
    for (const char* on : {"1", "0"}) {
        INFO("GLIMPSE_VK_ATTENTION_BLOCKED and GLIMPSE_VK_VIT_TILES_AT_ONCE =" << on);
        const ScopedEnv env("GLIMPSE_VK_ATTENTION_BLOCKED", on), env2("GLIMPSE_VK_VIT_TILES_AT_ONCE", on);
        // The tiny tower's 64 patch rows (head_dim 32) take the blocked kernel or the tiled one.
        const auto gpu = run_glimpse("describe " + image + " --device vulkan");
        INFO(gpu.err);
        REQUIRE(gpu.exit_code == 0);
        CHECK(gpu.out == cpu.out);
        // A prompt of 16 tokens or more: its causal prefill takes the blocked kernel or the per-row one.
        same_answer_on_vulkan("generate -m " + model +
                              " -p 'a big red ball rolled down the long green hill and a small blue cube sat still' -n 6");
        const auto j = bench_tiny_text(model);
        CHECK(j["attention_blocked"] == (on[0] == '1' ? "on" : "off"));
        CHECK(j["vit_tiles_at_once"] == (on[0] == '1'));
    }
}

TEST_CASE("vulkan CLI: --device vulkan: generate and bench run on the device", "[vulkan][vk_cli][cli]") {
    VK_OR_SKIP(ctx);
    const std::string model = q(kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf");
    same_answer_on_vulkan("generate -m " + model + " -p 'a big red' -n 12");

    const auto b = run_glimpse("bench --device vulkan -p 16 -n 4 -r 1 --vit-tiles 1 --json --profile");
    INFO(b.err);
    REQUIRE(b.exit_code == 0);
    const auto j = nlohmann::json::parse(b.out);
    CHECK(j["device"].get<std::string>().find("vulkan device") == 0);
    CHECK(j["encode_ms_per_tile"].get<double>() > 0);
    CHECK(j["prefill_tps"].get<double>() > 0);
    CHECK(j["decode_tps"].get<double>() > 0);
    // Decode against the device's bandwidth, and the encoder's compute rate.
    const double bw = j["device_copy_gbs"].get<double>(), bytes = j["decode_bytes_per_token"].get<double>();
    CHECK(bw > 0);
    CHECK(bytes > 0);
    // The bound takes the better of the transfer and the shader copies.
    CHECK(bw == std::max(j["device_copy_transfer_gbs"].get<double>(), j["device_copy_shader_gbs"].get<double>()));
    CHECK(j["device_copy_shader_gbs"].get<double>() > 0);
    CHECK(j["decode_bound_tps"].get<double>() == Approx(bw * 1e9 / bytes));
    CHECK(j["decode_pct_bound"].get<double>() == Approx(100.0 * j["decode_tps"].get<double>() / (bw * 1e9 / bytes)));
    CHECK(j["encode_gflop_per_tile"].get<double>() > 0);
    CHECK(j["encode_gflops"].get<double>() ==
          Approx(j["encode_gflop_per_tile"].get<double>() / j["encode_ms_per_tile"].get<double>() * 1000.0));
    // --profile: GPU time by shader of one encode, one prefill and the decode steps; a decode
    // step runs the per-row attention shader from the stacked Q·K·V product (attention_qkv)
    // once per layer, a (causal) prefill of 16 tokens the per-row one or the blocked one
    // (vk::attention_path), the encoder the blocked one.
    if (ctx->timestamp_bits() > 0) {
        const auto cfg = open_llama_model((kSource / "weights" / "tiny" / "tiny-smolvlm-text-f32.gguf").string()).config;
        const int layers = cfg.n_layers;
        for (const char* phase : {"encode", "prefill", "decode"}) {
            INFO(phase);
            CHECK(j["profile"][phase]["gpu_ms"].get<double>() > 0);
        }
        CHECK(j["profile"]["decode"]["shaders"]["attention_qkv"]["dispatches"].get<double>() == layers);
        CHECK_FALSE(j["profile"]["decode"]["shaders"].contains("attention"));
        const bool blocked = vk::attention_path(*ctx, 16, cfg.head_dim, true) == vk::AttentionPath::Blocked;
        CHECK(j["profile"]["prefill"]["shaders"][blocked ? "attention_block" : "attention"]["dispatches"].get<double>() ==
              layers);
        CHECK_FALSE(j["profile"]["decode"]["shaders"].contains("attention_block"));
        CHECK(j["profile"]["encode"]["shaders"].contains("attention_block"));
        CHECK(j["profile"]["encode"]["shaders"].contains("im2col"));
        // The matmul epilogue: K/V go straight into the cache and the residual adds, biases,
        // GELU and SwiGLU ride on the matmuls, so a decode step runs no element-wise shader
        // (the encoder no separate activation). Its token is picked on the device, so it copies
        // only that pick out (and the first step the first token and position in), inside its
        // one submission, and reads its embedding row there.
        const auto& decode = j["profile"]["decode"]["shaders"];
        // Norms ride on the matvecs on a GPU, not on a CPU device such as lavapipe.
        CHECK(j["fuse_norms"].get<bool>() == (j["device_type"].get<std::string>() != "cpu"));
        CHECK(decode.contains("rms_norm") == !j["fuse_norms"].get<bool>());
        REQUIRE(decode.contains("copy"));
        const double steps = j["decode_tokens"].get<double>();
        CHECK(decode["copy"]["dispatches"].get<double>() == Approx(1 + 2 / steps));
        CHECK(decode["greedy_pick"]["dispatches"].get<double>() == 1);
        CHECK(decode["get_rows_f32"]["dispatches"].get<double>() == 1);
        CHECK(j["profile"]["decode"]["submissions"].get<double>() == 1);
        CHECK(j["profile"]["decode"]["record_ms"].get<double>() > 0);
        CHECK_FALSE(decode.contains("binary"));
        CHECK_FALSE(decode.contains("unary"));
        CHECK_FALSE(j["profile"]["encode"]["shaders"].contains("unary"));
        const auto t = run_glimpse("bench --device vulkan -p 16 -n 4 -r 1 --vit-tiles 1 --profile");
        REQUIRE(t.exit_code == 0);
        CHECK(t.out.find("decode, 4 steps, GPU time by shader (per token):") != std::string::npos);
        CHECK(t.out.find("GPU total") != std::string::npos);
        CHECK(t.out.find("of the bandwidth bound of") != std::string::npos);
    }

    // bench --caption runs both towers there too, and says so.
    const auto c = run_glimpse("bench --caption --device vulkan --images 2 --batch 2 -n 4 -r 1 --json");
    INFO(c.err);
    REQUIRE(c.exit_code == 0);
    const auto cj = nlohmann::json::parse(c.out);
    CHECK(cj["device"].get<std::string>().find("vulkan device") == 0);
    CHECK(cj["batchN_images_per_min"].get<double>() > 0);
    CHECK(cj["batch_decode"] == true);  // a batch's captions step together on the device
    CHECK(cj["batch_prefill"] == true);  // and their prompts run together there
    CHECK(cj["record_ahead"] == true);  // each step recorded while the device runs the last
    CHECK(cj["greedy_pick"] == true);   // their greedy tokens picked there
    {
        const ScopedEnv e("GLIMPSE_VK_BATCH_DECODE", "0"), e2("GLIMPSE_VK_RECORD_AHEAD", "0"),
            e3("GLIMPSE_VK_GREEDY_PICK", "0"), e4("GLIMPSE_VK_BATCH_PREFILL", "0");
        const auto c0 = run_glimpse("bench --caption --device vulkan --images 2 --batch 2 -n 4 -r 1 --json");
        REQUIRE(c0.exit_code == 0);
        CHECK(nlohmann::json::parse(c0.out)["batch_decode"] == false);
        CHECK(nlohmann::json::parse(c0.out)["batch_prefill"] == false);
        CHECK(nlohmann::json::parse(c0.out)["record_ahead"] == false);
        CHECK(nlohmann::json::parse(c0.out)["greedy_pick"] == false);
    }
    const auto cc = run_glimpse("bench --caption --device cpu --images 2 --batch 2 -n 4 -r 1 --json");
    REQUIRE(cc.exit_code == 0);
    CHECK(nlohmann::json::parse(cc.out)["device"] == "cpu");
    CHECK_FALSE(nlohmann::json::parse(cc.out).contains("batch_decode"));
    CHECK_FALSE(nlohmann::json::parse(cc.out).contains("batch_prefill"));
    CHECK_FALSE(nlohmann::json::parse(cc.out).contains("record_ahead"));
    CHECK_FALSE(nlohmann::json::parse(cc.out).contains("greedy_pick"));
}
