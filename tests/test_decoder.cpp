// The Llama decoder on small synthetic models (no golden data needed): the three loaders agree
// with each other, their checks reject broken files with one clear line, the KV cache gives the
// same numbers as a batched prefill, and the context limit is enforced. stories260K (a real
// llama2.c model) must reproduce its published greedy story byte for byte.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "tests/helpers.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

// A random Llama with HF row order (q/k not permuted). Shapes outermost first: wq [H*hd][D].
struct TinyLlama {
    int L = 2, D = 32, H = 4, KV = 2, hd = 8, F = 48, V = 61;
    struct Layer {
        std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
    };
    std::vector<float> embd, out_norm, output;  // output empty: tied
    std::vector<Layer> layers;
};

std::vector<float> norm_weights(size_t n, uint64_t seed) {
    auto v = test::random_floats(n, seed, 0.2f);
    for (float& x : v) x += 1.0f;
    return v;
}

TinyLlama make_tiny(bool tied, uint64_t seed = 7) {
    TinyLlama m;
    const size_t D = size_t(m.D), Q = size_t(m.H * m.hd), K = size_t(m.KV * m.hd), F = size_t(m.F);
    m.embd = test::random_floats(size_t(m.V) * D, seed++, 1.0f);
    for (int l = 0; l < m.L; ++l) {
        TinyLlama::Layer y;
        y.attn_norm = norm_weights(D, seed++);
        y.wq = test::random_floats(Q * D, seed++, 0.4f);
        y.wk = test::random_floats(K * D, seed++, 0.4f);
        y.wv = test::random_floats(K * D, seed++, 0.4f);
        y.wo = test::random_floats(D * Q, seed++, 0.3f);
        y.ffn_norm = norm_weights(D, seed++);
        y.gate = test::random_floats(F * D, seed++, 0.4f);
        y.up = test::random_floats(F * D, seed++, 0.4f);
        y.down = test::random_floats(D * F, seed++, 0.3f);
        m.layers.push_back(std::move(y));
    }
    m.out_norm = norm_weights(D, seed++);
    if (!tied) m.output = test::random_floats(size_t(m.V) * D, seed++, 0.5f);
    return m;
}

// The GGUF converter's q/k row permutation (MODELS.md §1.4):
// GGUF_row[h·d + 2i + p] = HF_row[h·d + p·(d/2) + i].
std::vector<float> permute_rows(const std::vector<float>& w, int n_head, int hd, int cols) {
    std::vector<float> out(w.size());
    for (int h = 0; h < n_head; ++h)
        for (int i = 0; i < hd / 2; ++i)
            for (int p = 0; p < 2; ++p)
                std::memcpy(&out[size_t((h * hd + 2 * i + p) * cols)], &w[size_t((h * hd + p * (hd / 2) + i) * cols)],
                            size_t(cols) * sizeof(float));
    return out;
}

struct GgufOptions {
    std::string arch = "llama";
    std::string skip;      // a tensor left out
    std::string reshape;   // a tensor written with half its rows
    std::string int_type;  // a tensor written as I32
};

std::vector<uint8_t> to_gguf(const TinyLlama& m, const GgufOptions& o = {}) {
    GgufWriter w;
    w.set_str("general.architecture", o.arch);
    const std::string a = o.arch + ".";
    w.set_u32(a + "block_count", uint32_t(m.L));
    w.set_u32(a + "context_length", 128);
    w.set_u32(a + "embedding_length", uint32_t(m.D));
    w.set_u32(a + "feed_forward_length", uint32_t(m.F));
    w.set_u32(a + "attention.head_count", uint32_t(m.H));
    w.set_u32(a + "attention.head_count_kv", uint32_t(m.KV));
    w.set_f32(a + "rope.freq_base", 10000.0f);
    w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    auto add = [&](const std::string& name, const std::vector<float>& v, int64_t cols) {
        if (name == o.skip) return;
        int64_t rows = int64_t(v.size()) / cols;
        if (name == o.reshape) rows /= 2;
        const int n_dims = rows == 1 && cols == int64_t(v.size()) ? 1 : 2;
        if (name == o.int_type) {
            w.add_tensor(name, DType::I32, {cols, rows, 1, 1}, n_dims, v.data(), size_t(cols * rows) * 4);
            return;
        }
        w.add_tensor(name, DType::F32, {cols, rows, 1, 1}, n_dims, v.data(), size_t(cols * rows) * sizeof(float));
    };
    add("token_embd.weight", m.embd, m.D);
    for (int l = 0; l < m.L; ++l) {
        const auto& y = m.layers[size_t(l)];
        const std::string b = "blk." + std::to_string(l) + ".";
        add(b + "attn_norm.weight", y.attn_norm, m.D);
        add(b + "attn_q.weight", permute_rows(y.wq, m.H, m.hd, m.D), m.D);
        add(b + "attn_k.weight", permute_rows(y.wk, m.KV, m.hd, m.D), m.D);
        add(b + "attn_v.weight", y.wv, m.D);
        add(b + "attn_output.weight", y.wo, m.H * m.hd);
        add(b + "ffn_norm.weight", y.ffn_norm, m.D);
        add(b + "ffn_gate.weight", y.gate, m.D);
        add(b + "ffn_up.weight", y.up, m.D);
        add(b + "ffn_down.weight", y.down, m.F);
    }
    add("output_norm.weight", m.out_norm, m.D);
    if (!m.output.empty()) add("output.weight", m.output, m.D);
    return w.to_bytes();
}

Tensor f32_tensor(const std::string& name, const std::vector<float>& v, int64_t cols) {
    const int64_t rows = int64_t(v.size()) / cols;
    Tensor t = make_f32(name, {cols, rows, 1, 1}, rows == 1 ? 1 : 2);
    std::memcpy(f32_data(t), v.data(), v.size() * sizeof(float));
    return t;
}

// The same weights in transformers' names under `body`; norm weights as BF16 when asked.
void write_hf_folder(const fs::path& dir, const TinyLlama& m, const std::string& body, const nlohmann::json& config,
                     bool bf16_norms, const std::string& lm_head = "lm_head.weight") {
    std::vector<std::shared_ptr<std::vector<uint16_t>>> keep;
    auto norm = [&](const std::string& name, const std::vector<float>& v) {
        if (!bf16_norms) return f32_tensor(name, v, int64_t(v.size()));
        auto buf = std::make_shared<std::vector<uint16_t>>();
        for (float x : v) buf->push_back(f32_to_bf16(x));
        keep.push_back(buf);
        Tensor t;
        t.name = name;
        t.dtype = DType::BF16;
        t.n_dims = 1;
        t.ne = {int64_t(v.size()), 1, 1, 1};
        t.nb = contiguous_strides(DType::BF16, t.ne);
        t.data = buf->data();
        return t;
    };
    std::vector<Tensor> ts;
    ts.push_back(f32_tensor(body + "embed_tokens.weight", m.embd, m.D));
    for (int l = 0; l < m.L; ++l) {
        const auto& y = m.layers[size_t(l)];
        const std::string p = body + "layers." + std::to_string(l) + ".";
        ts.push_back(norm(p + "input_layernorm.weight", y.attn_norm));
        ts.push_back(f32_tensor(p + "self_attn.q_proj.weight", y.wq, m.D));
        ts.push_back(f32_tensor(p + "self_attn.k_proj.weight", y.wk, m.D));
        ts.push_back(f32_tensor(p + "self_attn.v_proj.weight", y.wv, m.D));
        ts.push_back(f32_tensor(p + "self_attn.o_proj.weight", y.wo, m.H * m.hd));
        ts.push_back(norm(p + "post_attention_layernorm.weight", y.ffn_norm));
        ts.push_back(f32_tensor(p + "mlp.gate_proj.weight", y.gate, m.D));
        ts.push_back(f32_tensor(p + "mlp.up_proj.weight", y.up, m.D));
        ts.push_back(f32_tensor(p + "mlp.down_proj.weight", y.down, m.F));
    }
    ts.push_back(norm(body + "norm.weight", m.out_norm));
    if (!m.output.empty()) ts.push_back(f32_tensor(lm_head, m.output, m.D));
    fs::create_directories(dir);
    write_safetensors((dir / "model.safetensors").string(), ts, {{"format", "pt"}});
    test::write_file(dir / "config.json", config.dump(1));
}

nlohmann::json llama_config(const TinyLlama& m) {
    return {{"hidden_size", m.D},         {"intermediate_size", m.F}, {"num_hidden_layers", m.L},
            {"num_attention_heads", m.H}, {"num_key_value_heads", m.KV}, {"vocab_size", m.V},
            {"rms_norm_eps", 1e-5},       {"rope_theta", 10000.0},    {"max_position_embeddings", 128}};
}

std::vector<float> all_logits(const LlamaModel& model, const std::vector<int32_t>& ids) {
    ThreadPool pool(2);
    LlamaContext ctx(model, pool, 64);
    std::vector<float> out(ids.size() * size_t(model.config.n_vocab));
    ctx.forward(ids.data(), int(ids.size()), 0, out.data(), LogitRows::All);
    return out;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

const std::vector<int32_t> kPrompt = {1, 5, 60, 17, 17, 3, 42, 0, 33, 8, 21, 59};

// Runs fn, which must throw glimpse::Error of `kind` whose one-line message holds every part.
template <typename Fn>
void require_error(Fn fn, ErrorKind kind, const std::vector<std::string>& parts) {
    try {
        fn();
        FAIL("no error thrown");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(e.kind() == kind);
        CHECK(msg.find('\n') == std::string::npos);
        for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    }
}

// The model's tensors point into `bytes`, which must outlive it.
LlamaModel load_bytes(const std::vector<uint8_t>& bytes, const std::string& name = "tiny.gguf") {
    return load_llama_gguf(GgufFile::parse_memory(bytes.data(), bytes.size(), name));
}

}  // namespace

TEST_CASE("decoder GGUF and HF folders of the same weights give the same logits", "[decoder]") {
    const bool tied = GENERATE(false, true);
    const TinyLlama m = make_tiny(tied);
    const auto gguf_bytes = to_gguf(m);
    const LlamaModel g = load_bytes(gguf_bytes);
    CHECK(g.config.rope_style == ops::RopeStyle::AdjacentPairs);
    CHECK(g.config.tied_output == tied);
    CHECK(g.config.head_dim == 8);
    const uint64_t per_layer = 2 * 32 + 32 * 32 + 2 * 16 * 32 + 32 * 32 + 3 * 48 * 32;  // floats
    CHECK(llama_weight_bytes(g) == 4 * (61 * 32 * (tied ? 1 : 2) + 2 * per_layer + 32));
    const auto ref = all_logits(g, kPrompt);

    test::TempDir tmp;
    SECTION("LlamaForCausalLM") {
        auto cfg = llama_config(m);
        cfg["architectures"] = {"LlamaForCausalLM"};
        cfg["tie_word_embeddings"] = tied;
        write_hf_folder(tmp / "llama", m, "model.", cfg, false);
        const LlamaModel h = open_llama_model((tmp / "llama").string());
        CHECK(h.format == LlamaFormat::HfFolder);
        CHECK(h.config.rope_style == ops::RopeStyle::HalfSplit);
        CHECK(h.config.tied_output == tied);
        // HF's rotate_half on unpermuted rows == adjacent pairs on permuted rows (up to the
        // float rounding of the two ways of computing the angles).
        CHECK(max_abs_diff(all_logits(h, kPrompt), ref) <= 1e-4f);
    }
    SECTION("Idefics3 text tower, BF16 norms") {
        nlohmann::json cfg = {{"architectures", {"Idefics3ForConditionalGeneration"}},
                              {"text_config", llama_config(m)},
                              {"tie_word_embeddings", tied}};
        write_hf_folder(tmp / "idefics3", m, "model.text_model.", cfg, true);
        const LlamaModel h = open_llama_model((tmp / "idefics3").string());
        CHECK(h.weights.layers[0].attn_norm.dtype == DType::F32);
        // BF16 norm weights lose precision: compare against the same model in float32 only loosely.
        CHECK(max_abs_diff(all_logits(h, kPrompt), ref) <= 0.1f);
        CHECK(h.weights.layers.size() == 2);
    }
    SECTION("Llava language model (both name layouts)") {
        nlohmann::json cfg = {{"architectures", {"LlavaForConditionalGeneration"}}, {"text_config", llama_config(m)},
                              {"tie_word_embeddings", tied}};
        write_hf_folder(tmp / "old", m, "language_model.model.", cfg, false, "language_model.lm_head.weight");
        write_hf_folder(tmp / "new", m, "model.language_model.", cfg, false, "lm_head.weight");
        CHECK(max_abs_diff(all_logits(open_llama_model((tmp / "old").string()), kPrompt), ref) <= 1e-4f);
        CHECK(max_abs_diff(all_logits(open_llama_model((tmp / "new").string()), kPrompt), ref) <= 1e-4f);
    }
}

TEST_CASE("decoder synthetic invariant: prefill == token-by-token decode, any batch size", "[decoder]") {
    const auto bytes = to_gguf(make_tiny(false));  // the model's tensors point into it
    const LlamaModel g = load_bytes(bytes);
    const int V = g.config.n_vocab;
    const auto ref = all_logits(g, kPrompt);
    const int n_batch = GENERATE(1, 3, 4, 5, 64);
    const int threads = GENERATE(1, 3);
    ThreadPool pool(threads);
    LlamaContext ctx(g, pool, 32, n_batch);
    std::vector<float> got(kPrompt.size() * size_t(V));
    ctx.forward(kPrompt.data(), int(kPrompt.size()), 0, got.data(), LogitRows::All);
    INFO("n_batch " << n_batch << ", threads " << threads);
    CHECK(max_abs_diff(got, ref) <= 1e-5f);

    // Decode one at a time, Last rows only.
    ctx.reset();
    std::vector<float> row(static_cast<size_t>(V));
    for (size_t i = 0; i < kPrompt.size(); ++i) {
        ctx.forward(&kPrompt[i], 1, int(i), row.data(), LogitRows::Last);
        const std::vector<float> want(ref.begin() + std::ptrdiff_t(i * size_t(V)),
                                      ref.begin() + std::ptrdiff_t((i + 1) * size_t(V)));
        CHECK(max_abs_diff(row, want) <= 1e-5f);
    }
    // forward_embeddings with the embedding rows is the token path.
    ctx.reset();
    std::vector<float> embd(kPrompt.size() * size_t(g.config.n_embd));
    ops::get_rows(g.weights.token_embd, kPrompt.data(), int64_t(kPrompt.size()), embd.data());
    ctx.forward_embeddings(embd.data(), int(kPrompt.size()), 0, got.data(), LogitRows::All);
    CHECK(max_abs_diff(got, ref) <= 1e-5f);
    CHECK(ctx.timings().prefill_tokens >= int64_t(kPrompt.size()));
}

TEST_CASE("decoder context limit and token range are enforced with clear errors", "[decoder]") {
    const auto bytes = to_gguf(make_tiny(true));
    const LlamaModel g = load_bytes(bytes);
    ThreadPool pool(1);
    LlamaContext ctx(g, pool, 8);
    std::vector<int32_t> ids(9, 3);
    std::vector<float> logits(static_cast<size_t>(g.config.n_vocab));
    require_error([&] { ctx.forward(ids.data(), 9, 0, logits.data()); }, ErrorKind::Usage,
                  {"9 tokens", "context of 8 tokens"});
    ctx.forward(ids.data(), 8, 0, logits.data());  // exactly full is fine
    CHECK(ctx.n_past() == 8);
    require_error([&] { ctx.forward(ids.data(), 1, 8, logits.data()); }, ErrorKind::Usage, {"context of 8"});
    require_error([&] { ctx.forward(ids.data(), 1, 9, logits.data()); }, ErrorKind::Usage, {"position 9"});
    const int32_t bad = g.config.n_vocab;
    require_error([&] { ctx.forward(&bad, 1, 0, logits.data()); }, ErrorKind::Model, {"token id 61", "tiny.gguf"});
    const int32_t negative = -1;
    require_error([&] { ctx.forward(&negative, 1, 0, logits.data()); }, ErrorKind::Model, {"token id -1"});

    // generate() stops when the context is full instead of failing.
    ctx.reset();
    Sampler s(SamplerParams{});
    GenerateOptions opts;
    opts.max_tokens = 100;
    const auto r = generate(ctx, std::vector<int32_t>(5, 3), s, opts, nullptr);
    CHECK(r.tokens.size() == 4);  // 5 prompt + 3 fed = 8 positions, and one more sampled
    CHECK(ctx.n_past() == 8);
}

TEST_CASE("decoder loaders reject broken GGUF files naming file and tensor", "[decoder]") {
    const TinyLlama m = make_tiny(false);
    SECTION("unsupported architecture") {
        GgufOptions o;
        o.arch = "qwen2";
        require_error([&] { load_bytes(to_gguf(m, o), "q.gguf"); }, ErrorKind::Model,
                      {"q.gguf: ", "qwen2", "general.architecture"});
    }
    SECTION("missing tensor") {
        GgufOptions o;
        o.skip = "blk.1.ffn_up.weight";
        require_error([&] { load_bytes(to_gguf(m, o), "m.gguf"); }, ErrorKind::Model, {"m.gguf: ", "blk.1.ffn_up.weight"});
    }
    SECTION("missing norm") {
        GgufOptions o;
        o.skip = "output_norm.weight";
        require_error([&] { load_bytes(to_gguf(m, o), "m.gguf"); }, ErrorKind::Model, {"m.gguf: ", "output_norm.weight"});
    }
    SECTION("wrong shape") {
        GgufOptions o;
        o.reshape = "blk.0.attn_k.weight";
        require_error([&] { load_bytes(to_gguf(m, o), "s.gguf"); }, ErrorKind::Model,
                      {"s.gguf: ", "blk.0.attn_k.weight", "shape [32, 8]", "expected [32, 16]"});
    }
    SECTION("output matrix of the wrong vocabulary") {
        GgufOptions o;
        o.reshape = "output.weight";
        require_error([&] { load_bytes(to_gguf(m, o), "o.gguf"); }, ErrorKind::Model, {"o.gguf: ", "output.weight"});
    }
    SECTION("type the kernels do not take") {
        GgufOptions o;
        o.int_type = "blk.1.attn_output.weight";
        require_error([&] { load_bytes(to_gguf(m, o), "t.gguf"); }, ErrorKind::Model,
                      {"t.gguf: ", "blk.1.attn_output.weight", "I32"});
    }
    SECTION("missing hyper-parameter") {
        GgufWriter w;
        w.set_str("general.architecture", "llama");
        const auto b2 = w.to_bytes();
        require_error([&] { load_bytes(b2, "h.gguf"); }, ErrorKind::Model, {"h.gguf: ", "llama.block_count"});
    }
}

TEST_CASE("decoder HF loader rejects what it cannot run", "[decoder]") {
    const TinyLlama m = make_tiny(false);
    test::TempDir tmp;
    SECTION("unknown architecture") {
        auto cfg = llama_config(m);
        cfg["architectures"] = {"Qwen2ForCausalLM"};
        write_hf_folder(tmp / "q", m, "model.", cfg, false);
        require_error([&] { open_llama_model((tmp / "q").string()); }, ErrorKind::Model, {"config.json", "Qwen2ForCausalLM"});
    }
    SECTION("no lm_head and not tied") {
        TinyLlama t = m;
        t.output.clear();
        auto cfg = llama_config(t);
        cfg["architectures"] = {"LlamaForCausalLM"};
        write_hf_folder(tmp / "n", t, "model.", cfg, false);
        require_error([&] { open_llama_model((tmp / "n").string()); }, ErrorKind::Model, {"lm_head.weight", "tie_word_embeddings"});
    }
    SECTION("config disagrees with the tensors") {
        auto cfg = llama_config(m);
        cfg["architectures"] = {"LlamaForCausalLM"};
        cfg["hidden_size"] = 48;
        write_hf_folder(tmp / "c", m, "model.", cfg, false);
        require_error([&] { open_llama_model((tmp / "c").string()); }, ErrorKind::Model, {"config.json", "hidden_size"});
    }
    SECTION("heads that do not match q_proj") {
        auto cfg = llama_config(m);
        cfg["architectures"] = {"LlamaForCausalLM"};
        cfg["head_dim"] = 4;  // 4 heads x 4 values: q_proj would have 16 rows, not 32
        write_hf_folder(tmp / "h", m, "model.", cfg, false);
        require_error([&] { open_llama_model((tmp / "h").string()); }, ErrorKind::Model, {"q_proj.weight", "shape"});
    }
    SECTION("not a model at all") {
        test::write_file(tmp / "junk.bin", std::string("hello, this is not a model"));
        require_error([&] { open_llama_model((tmp / "junk.bin").string()); }, ErrorKind::Model, {"junk.bin: "});
        require_error([&] { open_llama_model((tmp / "absent.gguf").string()); }, ErrorKind::BadInput, {"absent.gguf: "});
    }
}

TEST_CASE("decoder stories260K reproduces the published greedy story", "[decoder][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "stories260k";
    std::ifstream in(dir / "expected.json");
    const auto expected = nlohmann::json::parse(in);
    const int steps = expected["steps"].get<int>();
    const std::string want = expected["prompts"]["Once upon a time"].get<std::string>();

    const LlamaModel model = open_llama_model((dir / "stories260K.bin").string());
    CHECK(model.format == LlamaFormat::Llama2c);
    CHECK(model.config.n_kv_heads == 4);
    const auto tok = load_tokenizer_llama2c((dir / "tok512.bin").string(), model.config.n_vocab);
    const auto prompt = tok->encode("Once upon a time", true, false);
    REQUIRE(prompt.front() == 1);

    ThreadPool pool(1);
    LlamaContext ctx(model, pool, steps);
    Sampler sampler(SamplerParams{});  // temperature 0
    GenerateOptions opts;
    // run.c: `steps` positions in all, the last prompt position predicts the first new token;
    // it stops early only on BOS (id 1).
    opts.max_tokens = steps - int(prompt.size()) + 1;
    opts.stop_tokens = {1};
    const auto r = generate(ctx, prompt, sampler, opts, nullptr);
    std::vector<int32_t> all(prompt.begin() + 1, prompt.end());
    all.insert(all.end(), r.tokens.begin(), r.tokens.end());
    const std::string text = tok->decode(all, false);
    REQUIRE(want.size() >= 400);
    CHECK(text.substr(0, 400) == want.substr(0, 400));
    CHECK(text == want);
}
