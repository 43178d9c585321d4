// Random-weight GGUF models for benchmarks (weights/random_model.h): the files load through
// the real loaders with the named shapes, the same seed gives the same bytes, the weights have
// the intended scale, a forward pass stays finite, and the mmproj has MODELS.md §3.13's keys.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "tests/helpers.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"
#include "weights/random_model.h"

using namespace glimpse;

namespace {

// A small shape with the structure of the real ones (GQA, untied), fast to write.
RandomLlamaShape small_shape(int width) {
    RandomLlamaShape s;
    s.name = "test";
    s.n_layers = 2;
    s.n_embd = width;
    s.n_heads = width / 32;
    s.n_kv_heads = width / 64;
    s.head_dim = 32;
    s.n_ff = 2 * width;
    s.n_vocab = 300;
    s.n_ctx = 64;
    return s;
}

// Mean and standard deviation of a tensor's values after dequantization.
void moments(const Tensor& t, double& mean, double& sd) {
    const int64_t K = t.ne[0], rows = t.ne[1] * t.ne[2] * t.ne[3];
    std::vector<float> row(static_cast<size_t>(K));
    double s = 0, s2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + uint64_t(r) * t.nb[1], row.data(), K);
        for (float v : row) {
            s += v;
            s2 += double(v) * v;
        }
    }
    const double n = double(K * rows);
    mean = s / n;
    sd = std::sqrt(std::max(0.0, s2 / n - mean * mean));
}

}  // namespace

TEST_CASE("random model named shapes", "[random_model]") {
    const auto a = random_llama_shape("smollm2-135m");
    CHECK(a.n_layers == 30);
    CHECK(a.n_embd == 576);
    CHECK(a.n_heads == 9);
    CHECK(a.n_kv_heads == 3);
    CHECK(a.n_ff == 1536);
    CHECK(a.n_vocab == 49152);
    CHECK(a.tied);
    const auto b = random_llama_shape("smolvlm-256m");
    CHECK(b.n_vocab == 49280);
    CHECK_FALSE(b.tied);
    CHECK(b.n_embd == 576);
    const auto c = random_llama_shape("smolvlm-500m");
    CHECK(c.n_layers == 32);
    CHECK(c.n_embd == 960);
    CHECK(c.n_heads == 15);
    CHECK(c.n_kv_heads == 5);
    CHECK(c.n_ff == 2560);
    CHECK(c.head_dim * c.n_heads == c.n_embd);
    CHECK_THROWS_WITH(random_llama_shape("gpt-5"), Catch::Contains("known: smollm2-135m"));
    // K-quants need rows of 256: 576-wide matrices fall back as llama-quantize does.
    CHECK(random_matrix_type(DType::Q4_K, 576) == DType::Q5_0);
    CHECK(random_matrix_type(DType::Q6_K, 960) == DType::Q8_0);
    CHECK(random_matrix_type(DType::Q4_K, 1536) == DType::Q4_K);
    CHECK(random_matrix_type(DType::Q8_0, 576) == DType::Q8_0);
}

TEST_CASE("random llama GGUF loads with the right shapes and runs", "[random_model]") {
    test::TempDir dir;
    const DType type = GENERATE(DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K);
    const int width = type == DType::Q4_K ? 256 : 128;
    const RandomLlamaShape shape = small_shape(width);
    const std::string path = (dir / "m.gguf").string();
    write_random_llama_gguf(path, shape, type, 7);
    auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
    const LlamaModel model = load_llama_gguf(file);
    const LlamaConfig& c = model.config;
    CHECK(c.n_layers == 2);
    CHECK(c.n_embd == width);
    CHECK(c.n_heads == width / 32);
    CHECK(c.n_kv_heads == width / 64);
    CHECK(c.head_dim == 32);
    CHECK(c.n_ff == 2 * width);
    CHECK(c.n_vocab == 300);
    CHECK_FALSE(c.tied_output);
    CHECK(file->tensors().size() == 3 + 9 * 2);
    CHECK(model.weights.layers[1].w_down.dtype == type);
    CHECK(model.weights.layers[0].attn_norm.dtype == DType::F32);

    double mean, sd;
    moments(model.weights.layers[0].w_gate, mean, sd);
    CHECK(std::fabs(mean) < 0.002);
    CHECK(sd == Approx(0.02).epsilon(0.1));  // quantization adds a little noise
    moments(model.weights.layers[1].ffn_norm, mean, sd);
    CHECK(mean == Approx(1.0).epsilon(0.01));

    // The tokenizer: bytes in, bytes out.
    const auto tok = load_tokenizer_gguf(*file);
    const std::string text = "héllo, wörld\n\t{}";
    const auto ids = tok->encode(text, false, false);
    CHECK(ids.size() == text.size());  // no merges: one token per byte
    CHECK(tok->decode(ids) == text);

    ThreadPool pool(2);
    LlamaContext ctx(model, pool, 16);
    std::vector<int32_t> prompt = {1, 50, 299, 7, 120};
    std::vector<float> logits(static_cast<size_t>(c.n_vocab));
    ctx.forward(prompt.data(), int(prompt.size()), 0, logits.data());
    float max_abs = 0;
    for (float v : logits) {
        REQUIRE(std::isfinite(v));
        max_abs = std::max(max_abs, std::fabs(v));
    }
    CHECK(max_abs > 0.0f);
}

TEST_CASE("random llama GGUF: same seed same bytes, other seed other bytes", "[random_model]") {
    test::TempDir dir;
    const RandomLlamaShape shape = small_shape(128);
    write_random_llama_gguf((dir / "a.gguf").string(), shape, DType::Q8_0, 42);
    write_random_llama_gguf((dir / "b.gguf").string(), shape, DType::Q8_0, 42);
    write_random_llama_gguf((dir / "c.gguf").string(), shape, DType::Q8_0, 43);
    const auto a = test::read_file(dir / "a.gguf");
    CHECK(a == test::read_file(dir / "b.gguf"));
    const auto c = test::read_file(dir / "c.gguf");
    CHECK(a.size() == c.size());
    CHECK(a != c);
}

TEST_CASE("random llama GGUF: tied shape has no output matrix; bad input is refused", "[random_model]") {
    test::TempDir dir;
    RandomLlamaShape shape = small_shape(128);
    shape.tied = true;
    write_random_llama_gguf((dir / "t.gguf").string(), shape, DType::F16, 1);
    const GgufFile f = GgufFile::open((dir / "t.gguf").string());
    CHECK(f.find_tensor("output.weight") == nullptr);
    CHECK(load_llama_gguf(f).config.tied_output);

    shape.n_kv_heads = 3;  // 4 heads do not share 3 KV heads
    CHECK_THROWS_AS(write_random_llama_gguf((dir / "x.gguf").string(), shape, DType::F16, 1), Error);
    shape = small_shape(128);
    shape.n_embd = 100;  // not a multiple of the Q8_0 block
    CHECK_THROWS_WITH(write_random_llama_gguf((dir / "y.gguf").string(), shape, DType::Q8_0, 1),
                      Catch::Contains("cannot be Q8_0"));
    CHECK_THROWS_AS(write_random_llama_gguf((dir / "no-such-dir" / "z.gguf").string(), small_shape(128),
                                            DType::F16, 1),
                    Error);
}

TEST_CASE("random mmproj GGUF has the idefics3 keys and 198 tensors", "[random_model]") {
    test::TempDir dir;
    const std::string path = (dir / "mmproj.gguf").string();
    write_random_mmproj_gguf(path, "smolvlm-256m", DType::Q4_0, 3);
    const GgufFile f = GgufFile::open(path);
    CHECK(f.str("general.architecture") == "clip");
    CHECK(f.str("clip.projector_type") == "idefics3");
    CHECK(f.boolean("clip.has_vision_encoder"));
    CHECK(f.u32("clip.vision.image_size") == 512);
    CHECK(f.u32("clip.vision.patch_size") == 16);
    CHECK(f.u32("clip.vision.embedding_length") == 768);
    CHECK(f.u32("clip.vision.feed_forward_length") == 3072);
    CHECK(f.u32("clip.vision.block_count") == 12);
    CHECK(f.u32("clip.vision.attention.head_count") == 12);
    CHECK(f.f32("clip.vision.attention.layer_norm_epsilon") == Approx(1e-6));
    CHECK(f.u32("clip.vision.projection_dim") == 576);
    CHECK(f.f32_array("clip.vision.image_mean") == std::vector<float>{0.5f, 0.5f, 0.5f});
    CHECK(f.f32_array("clip.vision.image_std") == std::vector<float>{0.5f, 0.5f, 0.5f});
    CHECK(f.boolean("clip.use_gelu"));
    CHECK(f.u32("clip.vision.projector.scale_factor") == 4);
    CHECK(f.tensors().size() == 198);
    const Tensor& patch = f.tensor("v.patch_embd.weight");
    CHECK(patch.dtype == DType::F32);
    CHECK(patch.ne == std::array<int64_t, 4>{16, 16, 3, 768});
    CHECK(f.tensor("v.position_embd.weight").ne == std::array<int64_t, 4>{768, 1024, 1, 1});
    CHECK(f.tensor("v.blk.11.ffn_down.weight").ne == std::array<int64_t, 4>{3072, 768, 1, 1});
    CHECK(f.tensor("v.blk.11.ffn_down.weight").dtype == DType::Q4_0);
    CHECK(f.tensor("v.blk.0.attn_q.bias").dtype == DType::F32);
    const Tensor& fc = f.tensor("mm.model.fc.weight");
    CHECK(fc.ne == std::array<int64_t, 4>{12288, 576, 1, 1});
    CHECK_THROWS_AS(write_random_mmproj_gguf(path, "llava", DType::F16, 3), Error);
}
