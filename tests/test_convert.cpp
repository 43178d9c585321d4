// glimpse convert: GGUF re-quantization against llama-quantize's own files, llama2.c -> GGUF
// against the published stories260K story, HF Llama -> GGUF against the HF loader's logits (the
// Q/K permutation), and HF VLM folders rebuilt from the golden GGUF pairs -> the golden pairs
// again (names, shapes, bytes and metadata as llama.cpp's converters wrote them).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "helpers.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "text/tokenizer.h"
#include "weights/convert.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"

using namespace glimpse;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

ConvertOptions options(DType t, bool force = false) {
    ConvertOptions o;
    o.type = t;
    o.force = force;
    return o;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
    return a.bytes() == b.bytes() && std::memcmp(a.data, b.data, a.bytes()) == 0;
}

json value_json(const GgufFile& f, const std::string& key) { return gguf::value_to_json(*f.find(key)); }

// Every tensor of `want` is in `got` with the same type, shape and bytes, and nothing else is.
void require_same_tensors(const GgufFile& got, const GgufFile& want) {
    CHECK(got.tensors().size() == want.tensors().size());
    for (const Tensor& w : want.tensors()) {
        INFO("tensor " << w.name);
        const Tensor* g = got.find_tensor(w.name);
        REQUIRE(g != nullptr);
        CHECK(dtype_name(g->dtype) == dtype_name(w.dtype));
        CHECK(g->shape_string() == w.shape_string());
        CHECK(same_bytes(*g, w));
    }
}

// Every key of `want` (but those in `skip`) has the same type and value in `got`.
void require_same_keys(const GgufFile& got, const GgufFile& want, const std::vector<std::string>& skip) {
    for (const auto& kv : want.metadata()) {
        if (std::find(skip.begin(), skip.end(), kv.key) != skip.end()) continue;
        INFO("key " << kv.key);
        const gguf::Value* g = got.find(kv.key);
        REQUIRE(g != nullptr);
        CHECK(gguf::type_description(*g) == gguf::type_description(kv.value));
        CHECK(gguf::value_to_json(*g) == gguf::value_to_json(kv.value));
    }
}

std::vector<float> logits_of(const LlamaModel& model, const std::vector<int32_t>& ids) {
    ThreadPool pool(2);
    LlamaContext ctx(model, pool, 64);
    std::vector<float> out(ids.size() * size_t(model.config.n_vocab));
    ctx.forward(ids.data(), int(ids.size()), 0, out.data(), LogitRows::All);
    return out;
}

float max_abs(const std::vector<float>& v) {
    float m = 0;
    for (float x : v) m = std::max(m, std::fabs(x));
    return m;
}

// ||a - b|| / ||b||: the relative error of a whole logit matrix.
float rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += double(a[i] - b[i]) * double(a[i] - b[i]);
        den += double(b[i]) * double(b[i]);
    }
    return float(std::sqrt(num / den));
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// ---- HF folders built in the test --------------------------------------------------------------

// An owned contiguous tensor (F32 or F16 bytes) for write_safetensors.
Tensor owned(const std::string& name, DType t, std::array<int64_t, 4> ne, int n_dims, std::vector<uint8_t> bytes) {
    auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    Tensor x;
    x.name = name;
    x.dtype = t;
    x.n_dims = n_dims;
    x.ne = ne;
    x.nb = contiguous_strides(t, ne);
    x.data = buf->data();
    x.storage = buf;
    return x;
}

Tensor random_f32(const std::string& name, std::array<int64_t, 4> ne, int n_dims, uint64_t seed, float scale) {
    const auto v = test::random_floats(size_t(ne[0] * ne[1] * ne[2] * ne[3]), seed, scale);
    std::vector<uint8_t> bytes(v.size() * 4);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    return owned(name, DType::F32, ne, n_dims, std::move(bytes));
}

// A GGUF tensor under an HF name; q/k rows put back from GGUF's adjacent-pair order into HF's
// rotate_half order when `heads` > 0 (the inverse of the converter's permutation).
Tensor hf_from_gguf(const Tensor& g, const std::string& name, int heads = 0) {
    if (heads == 0) {
        Tensor t = g;
        t.name = name;
        return t;
    }
    std::vector<uint8_t> bytes(g.bytes());
    const uint64_t rb = g.nb[1];
    for (int64_t r = 0; r < g.ne[1]; ++r)
        std::memcpy(bytes.data() + uint64_t(rope_permuted_row(r, g.ne[1], heads)) * rb, g.row(r), rb);
    return owned(name, g.dtype, g.ne, g.n_dims, std::move(bytes));
}

// The text tensors of a golden GGUF under HF Llama names below `body`.
void add_text_tensors(const GgufFile& g, const std::string& body, const std::string& lm_head, int heads, int kv_heads,
                      std::vector<Tensor>& out) {
    out.push_back(hf_from_gguf(g.tensor("token_embd.weight"), body + "embed_tokens.weight"));
    for (int l = 0; l < int(g.u32("llama.block_count")); ++l) {
        const std::string b = "blk." + std::to_string(l) + ".", p = body + "layers." + std::to_string(l) + ".";
        out.push_back(hf_from_gguf(g.tensor(b + "attn_norm.weight"), p + "input_layernorm.weight"));
        out.push_back(hf_from_gguf(g.tensor(b + "attn_q.weight"), p + "self_attn.q_proj.weight", heads));
        out.push_back(hf_from_gguf(g.tensor(b + "attn_k.weight"), p + "self_attn.k_proj.weight", kv_heads));
        out.push_back(hf_from_gguf(g.tensor(b + "attn_v.weight"), p + "self_attn.v_proj.weight"));
        out.push_back(hf_from_gguf(g.tensor(b + "attn_output.weight"), p + "self_attn.o_proj.weight"));
        out.push_back(hf_from_gguf(g.tensor(b + "ffn_norm.weight"), p + "post_attention_layernorm.weight"));
        out.push_back(hf_from_gguf(g.tensor(b + "ffn_gate.weight"), p + "mlp.gate_proj.weight"));
        out.push_back(hf_from_gguf(g.tensor(b + "ffn_up.weight"), p + "mlp.up_proj.weight"));
        out.push_back(hf_from_gguf(g.tensor(b + "ffn_down.weight"), p + "mlp.down_proj.weight"));
    }
    out.push_back(hf_from_gguf(g.tensor("output_norm.weight"), body + "norm.weight"));
    if (const Tensor* o = g.find_tensor("output.weight")) out.push_back(hf_from_gguf(*o, lm_head));
}

// tokenizer.json in SmolLM2's byte-level shape over a GGUF "gpt2" vocabulary.
json bpe_tokenizer_json(const GgufFile& f) {
    const auto& tokens = f.str_array_ref("tokenizer.ggml.tokens");
    const auto types = f.i32_array("tokenizer.ggml.token_type");
    json vocab = json::object(), added = json::array(), merges = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (types[i] == 3 || types[i] == 4) added.push_back({{"id", i}, {"content", tokens[i]}, {"special", types[i] == 3}});
        else vocab[tokens[i]] = i;
    }
    for (const auto& m : f.str_array_ref("tokenizer.ggml.merges")) merges.push_back(m);
    const json digits = {{"type", "Digits"}, {"individual_digits", true}};
    const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    return {{"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {digits, byte_level}}}},
            {"post_processor", nullptr},
            {"model", {{"type", "BPE"}, {"unk_token", nullptr}, {"vocab", vocab}, {"merges", merges}}}};
}

// tokenizer.json in Llama-2's SentencePiece-like shape over a GGUF "llama" vocabulary (no merges:
// only the vocabulary is compared).
json spm_tokenizer_json(const GgufFile& f) {
    const auto& tokens = f.str_array_ref("tokenizer.ggml.tokens");
    json vocab = json::object(), added = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
    for (size_t i = 0; i < 3; ++i) added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
    const std::string meta = "\xE2\x96\x81";
    const json single = json::array({{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}});
    return {{"added_tokens", added},
            {"normalizer",
             {{"type", "Sequence"},
              {"normalizers", {{{"type", "Prepend"}, {"prepend", meta}},
                               {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", meta}}}}}},
            {"pre_tokenizer", nullptr},
            {"post_processor", {{"type", "TemplateProcessing"}, {"single", single}}},
            {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"vocab", vocab},
                       {"merges", json::array()}}}};
}

void write_json(const fs::path& p, const json& j) { test::write_file(p, j.dump()); }

}  // namespace

// ---- GGUF -> GGUF --------------------------------------------------------------------------------

TEST_CASE("convert: f32 GGUF to q8_0 and f16 gives llama-quantize's bytes", "[convert][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const GgufFile f32 = GgufFile::open((dir / "smolvlm-tiny-text-f32.gguf").string());
    test::TempDir tmp;
    for (auto [type, file] : {std::pair{DType::Q8_0, "smolvlm-tiny-text-q8_0.gguf"}, {DType::F16, "smolvlm-tiny-text-f16.gguf"}}) {
        INFO(file);
        const std::string out = (tmp / file).string();
        const ConvertResult r = convert_model(f32.path(), out, options(type));
        CHECK(r.input_kind == "GGUF");
        const GgufFile got = GgufFile::open(out);
        const GgufFile want = GgufFile::open((dir / file).string());
        require_same_tensors(got, want);
        require_same_keys(got, want, {});
        CHECK(got.metadata().size() == want.metadata().size());
        CHECK_FALSE(fs::exists(out + ".tmp"));
    }
}

TEST_CASE("convert: the golden f32 mmproj re-quantized to f16 equals the converter's f16 mmproj", "[convert][golden]") {
    GOLDEN_OR_SKIP(golden);
    test::TempDir tmp;
    const std::string out = (tmp / "m.gguf").string();
    convert_model((golden / "smolvlm-tiny/mmproj-smolvlm-tiny-f32.gguf").string(), out, options(DType::Q8_0));
    // mmproj matrices become F16 whatever text type is asked (as ggml-org ships Q8_0 text with an
    // F16 mmproj); the patch and position embeddings stay F32, as convert_hf_to_gguf writes them.
    const GgufFile got = GgufFile::open(out);
    const GgufFile want = GgufFile::open((golden / "smolvlm-tiny/mmproj-smolvlm-tiny-f16.gguf").string());
    require_same_tensors(got, want);
    require_same_keys(got, want, {});
}

// ---- llama2.c -> GGUF ------------------------------------------------------------------------------

TEST_CASE("convert: stories260K to GGUF generates the published story", "[convert][golden][cli]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "stories260k";
    const std::string want = glimpse::test::read_json(dir / "expected.json")["prompts"]["Once upon a time"].get<std::string>();
    test::TempDir tmp;
    const std::string out = (tmp / "stories.gguf").string();
    const auto c = test::run_glimpse("convert " + test::shell_quote((dir / "stories260K.bin").string()) + " --tokenizer " +
                                     test::shell_quote((dir / "tok512.bin").string()) + " -o " + test::shell_quote(out) +
                                     " --type f32");
    INFO(c.err);
    REQUIRE(c.exit_code == 0);
    CHECK(c.out == "wrote " + out + "\n");
    const GgufFile g = GgufFile::open(out);
    CHECK(g.str("tokenizer.ggml.model") == "llama");
    CHECK(g.find_tensor("output.weight") == nullptr);  // llama2.c shares the classifier
    // 256 positions in all (expected.json "steps"): 5 prompt tokens, 252 generated.
    const auto r = test::run_glimpse("generate -m " + test::shell_quote(out) + " -p 'Once upon a time' --temp 0 -n 252 -t 1");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK("Once upon a time" + r.out == want + "\n");

    // f16: the FFN down matrix (rows of 172) cannot be Q8_0 and says so; the file still loads.
    const std::string q8 = (tmp / "stories-q8.gguf").string();
    const auto q = test::run_glimpse("convert " + test::shell_quote((dir / "stories260K.bin").string()) + " -o " +
                                     test::shell_quote(q8) + " --type q8_0");
    INFO(q.err);
    REQUIRE(q.exit_code == 0);
    CHECK_THAT(q.err, Catch::Contains("note: 5 matrices have rows of 172 values") && Catch::Contains("stored as F16") &&
                          Catch::Contains("blk.0.ffn_down.weight"));
    const GgufFile gq = GgufFile::open(q8);
    CHECK(gq.tensor("blk.0.ffn_down.weight").dtype == DType::F16);
    CHECK(gq.tensor("blk.0.ffn_up.weight").dtype == DType::Q8_0);
    CHECK(gq.u32("general.file_type") == 7);
    CHECK_NOTHROW(load_llama_gguf(gq));
}

// ---- HF Llama -> GGUF ------------------------------------------------------------------------------

namespace {

// A byte-level BPE tokenizer.json: the 256 GPT-2 byte stand-ins, a few merges, two specials.
json tiny_bpe_tokenizer(int& n_tokens) {
    json vocab = json::object();
    std::vector<std::string> pieces;
    for (int b = 0; b < 256; ++b) {
        const std::string s = utf8::encode(byte_to_standin(uint8_t(b)));
        vocab[s] = b;
        pieces.push_back(s);
    }
    const std::string G = utf8::encode(byte_to_standin(' '));
    const std::vector<std::pair<std::string, std::string>> merges = {
        {G, "t"}, {"h", "e"}, {G + "t", "he"}, {"i", "n"}, {G, "a"}, {"o", "n"}, {G + "a", "n"}};
    int id = 256;
    json m = json::array();
    for (const auto& [a, b] : merges) {
        vocab[a + b] = id++;
        m.push_back(a + " " + b);
    }
    const json added = json::array({{{"id", id}, {"content", "<|endoftext|>"}, {"special", true}},
                                    {{"id", id + 1}, {"content", "<|im_start|>"}, {"special", true}}});
    n_tokens = id + 2;
    return {{"added_tokens", added},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
}

// A random LlamaForCausalLM folder: D, heads, kv heads, FFN; vocabulary padded past the tokenizer.
void write_hf_llama(const fs::path& dir, int D, int H, int KV, int F, int L, bool tied) {
    int n_tok = 0;
    const json tok = tiny_bpe_tokenizer(n_tok);
    const int V = n_tok + 6;  // the embedding table is larger than the vocabulary (padding tokens)
    const int hd = D / H;
    std::vector<Tensor> ts;
    uint64_t seed = 7;
    auto mat = [&](const std::string& n, int64_t cols, int64_t rows) {
        ts.push_back(random_f32(n, {cols, rows, 1, 1}, 2, ++seed, 0.5f / std::sqrt(float(cols)) * 4));
    };
    auto norm = [&](const std::string& n) {
        Tensor t = random_f32(n, {D, 1, 1, 1}, 1, ++seed, 0.2f);
        for (int i = 0; i < D; ++i) static_cast<float*>(const_cast<void*>(t.data))[i] += 1.0f;
        ts.push_back(t);
    };
    ts.push_back(random_f32("model.embed_tokens.weight", {D, V, 1, 1}, 2, ++seed, 1.0f));
    for (int l = 0; l < L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        norm(p + "input_layernorm.weight");
        mat(p + "self_attn.q_proj.weight", D, H * hd);
        mat(p + "self_attn.k_proj.weight", D, KV * hd);
        mat(p + "self_attn.v_proj.weight", D, KV * hd);
        mat(p + "self_attn.o_proj.weight", H * hd, D);
        norm(p + "post_attention_layernorm.weight");
        mat(p + "mlp.gate_proj.weight", D, F);
        mat(p + "mlp.up_proj.weight", D, F);
        mat(p + "mlp.down_proj.weight", F, D);
    }
    norm("model.norm.weight");
    if (!tied) mat("lm_head.weight", D, V);
    fs::create_directories(dir);
    write_safetensors((dir / "model.safetensors").string(), ts);
    write_json(dir / "config.json", {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
                                     {"hidden_size", D}, {"intermediate_size", F}, {"num_hidden_layers", L},
                                     {"num_attention_heads", H}, {"num_key_value_heads", KV}, {"vocab_size", V},
                                     {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"max_position_embeddings", 256},
                                     {"tie_word_embeddings", tied}});
    write_json(dir / "tokenizer.json", tok);
    write_json(dir / "tokenizer_config.json", {{"bos_token", "<|im_start|>"}, {"eos_token", "<|endoftext|>"}});
}

}  // namespace

TEST_CASE("convert: HF Llama folder to GGUF gives the HF model's logits (Q/K permutation)", "[convert]") {
    test::TempDir tmp;
    auto [D, H, KV, F, tied] = GENERATE(std::tuple{64, 4, 2, 96, false}, std::tuple{32, 2, 1, 64, true});
    INFO("D " << D << " heads " << H << "/" << KV << " tied " << tied);
    write_hf_llama(tmp / "hf", D, H, KV, F, 2, tied);
    const std::string out = (tmp / "out.gguf").string();
    const ConvertResult r = convert_model((tmp / "hf").string(), out, options(DType::F32));
    CHECK(r.input_kind == "Hugging Face LlamaForCausalLM");
    const auto hf = load_llama_hf(std::make_shared<const HfFolder>(HfFolder::open((tmp / "hf").string())));
    const auto gg = load_llama_gguf(std::make_shared<const GgufFile>(GgufFile::open(out)));
    CHECK(gg.config.tied_output == tied);
    CHECK(gg.config.rope_style == ops::RopeStyle::AdjacentPairs);
    const std::vector<int32_t> ids = {263, 5, 260, 84, 104, 101, 32, 262, 264, 119, 0, 33};
    const auto want = logits_of(hf, ids);
    const auto got = logits_of(gg, ids);
    CHECK(max_abs_diff(got, want) <= 1e-5f);
    CHECK(max_abs_diff(got, want) <= 1e-6f * max_abs(want) * 100);

    // The vocabulary: the same ids for text and special tokens, padded to the embedding rows.
    const auto tok_hf = load_tokenizer_hf_json((tmp / "hf/tokenizer.json").string());
    const auto tok_gg = load_tokenizer_gguf(*gg.gguf);
    CHECK(tok_gg->n_vocab() == gg.config.n_vocab);
    CHECK(gg.gguf->str("tokenizer.ggml.pre") == "gpt-2");
    CHECK(tok_gg->token_text(tok_gg->n_vocab() - 1) == "[PAD" + std::to_string(tok_gg->n_vocab() - 1) + "]");
    for (const char* text : {"the cat ran on and on", "<|im_start|>then\n  x<|endoftext|>", "\xF0\x9F\x99\x82 \xD0\xBF"})
        CHECK(tok_gg->encode(text, true, true) == tok_hf->encode(text, true, true));
    CHECK(tok_gg->bos_id() == tok_hf->bos_id());
    CHECK(tok_gg->eos_id() == tok_hf->eos_id());
}

TEST_CASE("convert: HF Llama folder to q8_0 / q4_0 / q4_k gives logits close to f32", "[convert]") {
    test::TempDir tmp;
    // D = 256 so that Q4_K (256-value super-blocks) is used for real, not its Q5_0 fallback.
    write_hf_llama(tmp / "hf", 256, 4, 2, 256, 2, false);
    const std::string f32 = (tmp / "f32.gguf").string();
    convert_model((tmp / "hf").string(), f32, options(DType::F32));
    const std::vector<int32_t> ids = {263, 5, 260, 84, 104, 101, 32, 262};
    const auto ref = logits_of(load_llama_gguf(std::make_shared<const GgufFile>(GgufFile::open(f32))), ids);
    // Tolerances on ||logits - f32|| / ||f32 logits||. Every matrix (embedding and output too)
    // is quantized, and the errors of ~10 matmuls compound: measured here F16 8e-4, Q8_0 1.5e-2,
    // Q4_0 0.27, Q4_K 0.21 (a 4-bit step is ~17x a Q8_0 step, and so is the error).
    for (auto [type, rel] : {std::pair{DType::F16, 0.005f}, {DType::Q8_0, 0.05f}, {DType::Q4_0, 0.5f}, {DType::Q4_K, 0.5f}}) {
        INFO(dtype_name(type));
        const std::string out = (tmp / (std::string(dtype_name(type)) + ".gguf")).string();
        convert_model((tmp / "hf").string(), out, options(type));
        const auto g = std::make_shared<const GgufFile>(GgufFile::open(out));
        CHECK(g->tensor("blk.0.attn_q.weight").dtype == type);
        CHECK(g->tensor("token_embd.weight").dtype == type);
        CHECK(g->tensor("blk.0.attn_norm.weight").dtype == DType::F32);
        CHECK(g->u32("general.file_type") == gguf_file_type(type));
        const auto got = logits_of(load_llama_gguf(g), ids);
        for (float x : got) REQUIRE(std::isfinite(x));
        const float diff = max_abs_diff(got, ref);
        INFO("max |diff| " << diff << " of max |logit| " << max_abs(ref) << "; relative RMS " << rel_rms(got, ref));
        CHECK(rel_rms(got, ref) <= rel);
        CHECK(diff > 0.0f);  // it really was quantized
    }
}

TEST_CASE("convert: Q4_K rows of 64 fall back to Q5_0, as llama-quantize does", "[convert]") {
    CHECK(fallback_type(DType::Q4_K, 64) == DType::Q5_0);
    CHECK(fallback_type(DType::Q4_K, 512) == DType::Q4_K);
    CHECK(fallback_type(DType::Q8_0, 172) == DType::F16);
    CHECK(fallback_type(DType::Q4_K, 48) == DType::F16);
    CHECK(fallback_type(DType::F32, 3) == DType::F32);
    // MODELS.md §1.4: GGUF_row[h·d + 2i + p] = HF_row[h·d + p·(d/2) + i]; d = 4 here.
    const std::vector<int64_t> want = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int64_t r = 0; r < 8; ++r) CHECK(rope_permuted_row(r, 8, 2) == want[size_t(r)]);
}

// ---- Bad input ------------------------------------------------------------------------------------

TEST_CASE("convert CLI: bad inputs give one line and the right exit code", "[convert][cli]") {
    test::TempDir tmp;
    auto one_line = [](const test::RunResult& r) {
        INFO(r.err);
        CHECK(r.out.empty());
        REQUIRE(!r.err.empty());
        CHECK(r.err.find('\n') == r.err.size() - 1);
    };
    const std::string missing = (tmp / "nope.bin").string();
    const auto a = test::run_glimpse("convert " + test::shell_quote(missing) + " -o " + test::shell_quote((tmp / "o.gguf").string()));
    CHECK(a.exit_code == 2);
    one_line(a);
    CHECK_THAT(a.err, Catch::Contains(missing));

    write_hf_llama(tmp / "hf", 32, 2, 1, 64, 1, true);
    const std::string out = (tmp / "out.gguf").string();
    test::write_file(out, std::string("not mine"));
    const auto b = test::run_glimpse("convert " + test::shell_quote((tmp / "hf").string()) + " -o " + test::shell_quote(out));
    CHECK(b.exit_code == 2);
    one_line(b);
    CHECK_THAT(b.err, Catch::Contains(out) && Catch::Contains("--force"));
    CHECK(test::read_file(out).size() == 8);  // untouched
    const auto c = test::run_glimpse("convert " + test::shell_quote((tmp / "hf").string()) + " -o " + test::shell_quote(out) + " --force");
    INFO(c.err);
    CHECK(c.exit_code == 0);
    CHECK_NOTHROW(GgufFile::open(out));

    json cfg = glimpse::test::read_json(tmp / "hf/config.json");
    cfg["architectures"] = {"Qwen2ForCausalLM"};
    write_json(tmp / "hf/config.json", cfg);
    const auto d = test::run_glimpse("convert " + test::shell_quote((tmp / "hf").string()) + " -o " +
                                     test::shell_quote((tmp / "q.gguf").string()));
    CHECK(d.exit_code == 3);
    one_line(d);
    CHECK_THAT(d.err, Catch::Contains("config.json") && Catch::Contains("Qwen2ForCausalLM"));
    CHECK_FALSE(fs::exists(tmp / "q.gguf"));
    CHECK_FALSE(fs::exists(tmp / "q.gguf.tmp"));

    const auto e = test::run_glimpse("convert " + test::shell_quote(out) + " -o " + test::shell_quote((tmp / "e.gguf").string()) +
                                     " --type q5_k");
    CHECK(e.exit_code == 1);
    one_line(e);

    test::write_file(tmp / "junk.bin", std::string(100, 'x'));
    const auto f = test::run_glimpse("convert " + test::shell_quote((tmp / "junk.bin").string()) + " -o " +
                                     test::shell_quote((tmp / "j.gguf").string()));
    CHECK(f.exit_code == 3);
    one_line(f);
}

// ---- VLM folders -> the GGUF pair --------------------------------------------------------------------

TEST_CASE("convert: SmolVLM folder to the golden text GGUF and idefics3 mmproj", "[convert][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const GgufFile text = GgufFile::open((dir / "smolvlm-tiny-text-f32.gguf").string());
    const GgufFile mm = GgufFile::open((dir / "mmproj-smolvlm-tiny-f32.gguf").string());
    test::TempDir tmp;
    const fs::path hf = tmp / "SmolVLM-tiny";
    fs::create_directories(hf);

    // The golden tensors under the names of HF's Idefics3 checkpoints (MODELS.md §3.3).
    std::vector<Tensor> ts;
    add_text_tensors(text, "model.text_model.", "lm_head.weight", 4, 2, ts);
    const std::string v = "model.vision_model.";
    ts.push_back(hf_from_gguf(mm.tensor("v.patch_embd.weight"), v + "embeddings.patch_embedding.weight"));
    ts.push_back(hf_from_gguf(mm.tensor("v.patch_embd.bias"), v + "embeddings.patch_embedding.bias"));
    ts.push_back(hf_from_gguf(mm.tensor("v.position_embd.weight"), v + "embeddings.position_embedding.weight"));
    const std::map<std::string, std::string> block = {
        {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
        {"attn_out", "self_attn.out_proj"}, {"ln1", "layer_norm1"}, {"ln2", "layer_norm2"},
        {"ffn_up", "mlp.fc1"}, {"ffn_down", "mlp.fc2"}};
    for (int i = 0; i < 2; ++i)
        for (const auto& [g, h] : block)
            for (const char* wb : {".weight", ".bias"})
                ts.push_back(hf_from_gguf(mm.tensor("v.blk." + std::to_string(i) + "." + g + wb),
                                          v + "encoder.layers." + std::to_string(i) + "." + h + wb));
    ts.push_back(hf_from_gguf(mm.tensor("v.post_ln.weight"), v + "post_layernorm.weight"));
    ts.push_back(hf_from_gguf(mm.tensor("v.post_ln.bias"), v + "post_layernorm.bias"));
    ts.push_back(hf_from_gguf(mm.tensor("mm.model.fc.weight"), "model.connector.modality_projection.proj.weight"));
    write_safetensors((hf / "model.safetensors").string(), ts);
    write_json(hf / "config.json",
               {{"architectures", {"Idefics3ForConditionalGeneration"}}, {"model_type", "idefics3"}, {"scale_factor", 4},
                {"tie_word_embeddings", true},
                {"text_config", {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 128},
                                 {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                                 {"rms_norm_eps", 1e-5}, {"rope_theta", 100000.0}, {"max_position_embeddings", 8192},
                                 {"vocab_size", 49194}, {"tie_word_embeddings", true}}},
                {"vision_config", {{"hidden_size", 64}, {"image_size", 128}, {"patch_size", 16},
                                   {"num_attention_heads", 4}, {"intermediate_size", 256}, {"num_hidden_layers", 2},
                                   {"layer_norm_eps", 1e-6}}}});
    write_json(hf / "preprocessor_config.json",
               {{"image_mean", {0.5, 0.5, 0.5}}, {"image_std", {0.5, 0.5, 0.5}}, {"size", {{"longest_edge", 384}}}});
    write_json(hf / "tokenizer.json", bpe_tokenizer_json(text));
    write_json(hf / "tokenizer_config.json", {{"bos_token", "<|im_start|>"}, {"eos_token", "<end_of_utterance>"},
                                              {"pad_token", "<|im_end|>"},
                                              {"chat_template", text.str("tokenizer.chat_template")}});

    SECTION("f32: both files equal the golden F32 pair") {
        const std::string out = (tmp / "smol.gguf").string();
        const ConvertResult r = convert_model(hf.string(), out, options(DType::F32));
        REQUIRE(r.written.size() == 2);
        CHECK(r.written[1] == (tmp / "mmproj-smol.gguf").string());
        const GgufFile got_mm = GgufFile::open(r.written[1]);
        require_same_tensors(got_mm, mm);
        require_same_keys(got_mm, mm, {"general.name"});
        CHECK(got_mm.metadata().size() == mm.metadata().size());
        // The text file: llama.cpp's names, permuted q/k bytes, keys and vocabulary.
        const GgufFile got_text = GgufFile::open(out);
        require_same_tensors(got_text, text);
        require_same_keys(got_text, text, {"general.name", "tokenizer.ggml.unknown_token_id"});
    }
    SECTION("default type: F16 matrices in both, as the golden f16 mmproj; --mmproj-out is honoured") {
        const std::string out = (tmp / "smol-f16.gguf").string();
        ConvertOptions o = options(DType::F16);
        o.mmproj_out = (tmp / "vision.gguf").string();
        convert_model(hf.string(), out, o);
        const GgufFile got_mm = GgufFile::open(o.mmproj_out);
        const GgufFile want_mm = GgufFile::open((dir / "mmproj-smolvlm-tiny-f16.gguf").string());
        require_same_tensors(got_mm, want_mm);
        require_same_keys(got_mm, want_mm, {"general.name"});
        require_same_tensors(GgufFile::open(out), GgufFile::open((dir / "smolvlm-tiny-text-f16.gguf").string()));
        CHECK_FALSE(fs::exists(tmp / "mmproj-smol-f16.gguf"));
    }
    SECTION("a vision config that contradicts the tensors is reported before anything is written") {
        json cfg = glimpse::test::read_json(hf / "config.json");
        cfg["vision_config"]["patch_size"] = 8;
        write_json(hf / "config.json", cfg);
        const std::string out = (tmp / "y.gguf").string();
        try {
            convert_model(hf.string(), out, options(DType::F32));
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::Model);
            CHECK_THAT(e.what(), Catch::Contains("config.json") && Catch::Contains("patch_size"));
        }
        CHECK_FALSE(fs::exists(out));
    }
    SECTION("an existing mmproj output is refused before anything is written") {
        test::write_file(tmp / "mmproj-x.gguf", std::string("keep"));
        const std::string out = (tmp / "x.gguf").string();
        try {
            convert_model(hf.string(), out, options(DType::F32));
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::BadInput);
            CHECK_THAT(e.what(), Catch::Contains("mmproj-x.gguf") && Catch::Contains("--force"));
        }
        CHECK_FALSE(fs::exists(out));
    }
}

TEST_CASE("convert: Llava folder to the golden text GGUF and legacy mlp mmproj", "[convert][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    const GgufFile text = GgufFile::open((dir / "llava-tiny-text-f16.gguf").string());
    const GgufFile mm = GgufFile::open((dir / "mmproj-llava-tiny-f16.gguf").string());
    test::TempDir tmp;
    const fs::path hf = tmp / "llava-tiny-hf";
    fs::create_directories(hf);

    std::vector<Tensor> ts;
    add_text_tensors(text, "language_model.model.", "language_model.lm_head.weight", 4, 4, ts);
    const std::string v = "vision_tower.vision_model.";
    ts.push_back(hf_from_gguf(mm.tensor("v.class_embd"), v + "embeddings.class_embedding"));
    ts.push_back(hf_from_gguf(mm.tensor("v.patch_embd.weight"), v + "embeddings.patch_embedding.weight"));
    ts.push_back(hf_from_gguf(mm.tensor("v.position_embd.weight"), v + "embeddings.position_embedding.weight"));
    ts.push_back(hf_from_gguf(mm.tensor("v.pre_ln.weight"), v + "pre_layrnorm.weight"));
    ts.push_back(hf_from_gguf(mm.tensor("v.pre_ln.bias"), v + "pre_layrnorm.bias"));
    // The legacy file stores fc1 as ffn_down and fc2 as ffn_up (MODELS.md §4.6).
    const std::map<std::string, std::string> block = {
        {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
        {"attn_out", "self_attn.out_proj"}, {"ln1", "layer_norm1"}, {"ln2", "layer_norm2"},
        {"ffn_down", "mlp.fc1"}, {"ffn_up", "mlp.fc2"}};
    for (int i = 0; i < 2; ++i)
        for (const auto& [g, h] : block)
            for (const char* wb : {".weight", ".bias"})
                ts.push_back(hf_from_gguf(mm.tensor("v.blk." + std::to_string(i) + "." + g + wb),
                                          v + "encoder.layers." + std::to_string(i) + "." + h + wb));
    // HF's third (last) CLIP layer and post_layernorm: not in the legacy file (LLaVA reads layer -2).
    uint64_t seed = 99;
    const std::string l2 = v + "encoder.layers.2.";
    for (const auto& [g, h] : block) {
        const bool fc1 = h == "mlp.fc1", fc2 = h == "mlp.fc2", ln = h.rfind("layer_norm", 0) == 0;
        const int64_t cols = fc2 ? 256 : 64, rows = fc1 ? 256 : 64;
        if (!ln) ts.push_back(random_f32(l2 + h + ".weight", {cols, rows, 1, 1}, 2, ++seed, 0.1f));
        else ts.push_back(random_f32(l2 + h + ".weight", {64, 1, 1, 1}, 1, ++seed, 0.1f));
        ts.push_back(random_f32(l2 + h + ".bias", {rows, 1, 1, 1}, 1, ++seed, 0.1f));
    }
    ts.push_back(random_f32(v + "post_layernorm.weight", {64, 1, 1, 1}, 1, ++seed, 0.1f));
    ts.push_back(random_f32(v + "post_layernorm.bias", {64, 1, 1, 1}, 1, ++seed, 0.1f));
    for (const char* n : {"0", "2"})
        for (const char* wb : {".weight", ".bias"})
            ts.push_back(hf_from_gguf(mm.tensor(std::string("mm.") + n + wb),
                                      std::string("multi_modal_projector.linear_") + (n[0] == '0' ? "1" : "2") + wb));
    write_safetensors((hf / "model.safetensors").string(), ts);
    write_json(hf / "config.json",
               {{"architectures", {"LlavaForConditionalGeneration"}}, {"model_type", "llava"},
                {"vision_feature_layer", -2}, {"vision_feature_select_strategy", "default"},
                {"projector_hidden_act", "gelu"}, {"image_token_index", 32000},
                {"text_config", {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 160},
                                 {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                                 {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"max_position_embeddings", 4096},
                                 {"vocab_size", 32000}}},
                {"vision_config", {{"hidden_size", 64}, {"image_size", 84}, {"patch_size", 14}, {"num_attention_heads", 4},
                                   {"intermediate_size", 256}, {"num_hidden_layers", 3}, {"layer_norm_eps", 1e-5},
                                   {"projection_dim", 48}, {"hidden_act", "quick_gelu"}}}});
    write_json(hf / "preprocessor_config.json", {{"image_mean", {0.48145466, 0.4578275, 0.40821073}},
                                                 {"image_std", {0.26862954, 0.26130258, 0.27577711}}});
    write_json(hf / "tokenizer.json", spm_tokenizer_json(text));
    write_json(hf / "tokenizer_config.json", {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}});

    const std::string out = (tmp / "llava.gguf").string();
    const ConvertResult r = convert_model(hf.string(), out, options(DType::F16));
    REQUIRE(r.written.size() == 2);
    const GgufFile got_mm = GgufFile::open(r.written[1]);
    require_same_tensors(got_mm, mm);
    require_same_keys(got_mm, mm, {"general.name"});
    CHECK(got_mm.metadata().size() == mm.metadata().size());
    CHECK(got_mm.find_tensor("v.blk.2.attn_q.weight") == nullptr);
    CHECK(got_mm.find_tensor("v.post_ln.weight") == nullptr);

    const GgufFile got_text = GgufFile::open(out);
    require_same_tensors(got_text, text);
    CHECK(value_json(got_text, "tokenizer.ggml.tokens") == value_json(text, "tokenizer.ggml.tokens"));
    CHECK(value_json(got_text, "tokenizer.ggml.token_type") == value_json(text, "tokenizer.ggml.token_type"));
    for (const char* key : {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
                            "llama.context_length", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
        INFO(key);
        REQUIRE(got_text.has(key));
        CHECK(value_json(got_text, key) == value_json(text, key));
    }
    CHECK(got_text.str("tokenizer.ggml.model") == "llama");
    const auto tok = load_tokenizer_gguf(got_text);
    CHECK(tok->add_bos());
}
