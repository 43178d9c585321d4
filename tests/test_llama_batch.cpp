// The batched decode step (text/llama_batch.h) against LlamaContext::forward: sequences of
// different lengths decoded together give exactly (bit for bit: tolerance 0) the logits and
// greedy tokens each gives decoded alone, when sequences leave the batch early and whatever
// the batch holds; and matmul_rows_as_decode equals M = 1 matmuls row by row.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "tests/batch_steps.h"
#include "tests/helpers.h"
#include "text/llama_batch.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "weights/gguf.h"
#include "weights/random_model.h"

using namespace glimpse;

namespace {

RandomLlamaShape batch_shape() {
    RandomLlamaShape s;
    s.name = "batch-test";
    s.n_layers = 2;
    s.n_embd = 128;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.head_dim = 32;
    s.n_ff = 256;
    s.n_vocab = 300;
    s.n_ctx = 64;
    return s;
}

// batch_shape(), widened to rows of 256 for the K-quants.
RandomLlamaShape batch_shape(DType type) {
    RandomLlamaShape s = batch_shape();
    if (type == DType::Q4_K) {
        s.n_embd = 256;
        s.n_heads = 8;
        s.n_kv_heads = 4;
        s.n_ff = 512;
    }
    return s;
}

// A random model of batch_shape(type), written into dir and opened.
LlamaModel batch_model(const test::TempDir& dir, DType type, uint64_t seed) {
    const std::string path = (dir / "m.gguf").string();
    write_random_llama_gguf(path, batch_shape(type), type, seed);
    return load_llama_gguf(std::make_shared<const GgufFile>(GgufFile::open(path)));
}

int32_t argmax(const float* v, int n) { return int32_t(std::max_element(v, v + n) - v); }

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

}  // namespace

// Exact equality is the right test here, not a tolerance: the batch computes every row with
// the same kernels, in the same order of operations, as a one-token forward() (see the header),
// so any difference at all means the batch mixed sequences or took another kernel path.
TEST_CASE("batched decode equals each sequence decoded alone, bit for bit", "[llama_batch]") {
    const DType type = GENERATE(DType::F32, DType::F16, DType::Q8_0, DType::Q4_K);
    const int threads = GENERATE(1, 2);
    const std::string type_name(dtype_name(type));
    CAPTURE(type_name, threads);
    test::TempDir dir;
    const LlamaModel model = batch_model(dir, type, 11);
    const int V = model.config.n_vocab;
    ThreadPool pool(threads);

    // Five prompts of different lengths (1 to 9 tokens): the sequences sit at different depths.
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 40, 41, 42, 43, 44, 45, 46, 47}, {1}, {1, 200, 17}, {1, 5, 6, 7, 8, 9}, {1, 299, 298, 100}};
    const size_t B = prompts.size();
    // Greedy steps per sequence: some leave the batch early (0 = only the prompt's logits).
    const std::vector<int> steps = {12, 3, 12, 0, 7};

    // Alone: prefill, then one forward() per greedy token.
    std::vector<std::vector<int32_t>> want_tokens(B);
    std::vector<std::vector<std::vector<float>>> want_logits(B);
    for (size_t s = 0; s < B; ++s) {
        LlamaContext ctx(model, pool, 32);
        std::vector<float> logits(static_cast<size_t>(V));
        ctx.forward(prompts[s].data(), int(prompts[s].size()), 0, logits.data());
        for (int i = 0; i < steps[s]; ++i) {
            const int32_t id = argmax(logits.data(), V);
            want_tokens[s].push_back(id);
            ctx.forward(&id, 1, ctx.n_past(), logits.data());
            want_logits[s].push_back(logits);
        }
    }

    // Together: the same prefills, then one batched step for every sequence still going.
    std::vector<std::unique_ptr<LlamaContext>> ctxs;
    std::vector<std::vector<float>> last(B, std::vector<float>(static_cast<size_t>(V)));
    for (size_t s = 0; s < B; ++s) {
        ctxs.push_back(std::make_unique<LlamaContext>(model, pool, 32));
        ctxs[s]->forward(prompts[s].data(), int(prompts[s].size()), 0, last[s].data());
    }
    LlamaBatch batch(model, pool, /*max_seqs=*/3);  // 4 live sequences take two passes
    std::vector<std::vector<int32_t>> got_tokens(B);
    std::vector<LlamaContext*> seqs;
    for (auto& c : ctxs) seqs.push_back(c.get());
    test::greedy_batch_steps(batch, seqs, steps, last, got_tokens, [&](int i, size_t s) {
        CHECK(same_bits(last[s].data(), want_logits[s][size_t(i)].data(), size_t(V)));
    });
    for (size_t s = 0; s < B; ++s) {
        CHECK(got_tokens[s] == want_tokens[s]);
        CHECK(ctxs[s]->n_past() == int(prompts[s].size()) + steps[s]);
    }
    CHECK(ctxs[0]->timings().decode_tokens == 12);
}

// The same exactness for prompts: LlamaBatch::prefill puts the rows of several prompts through
// one GEMM per weight; each sequence's last-position logits, and its cache (checked through the
// next decode step), equal those of forward_embeddings on its prompt alone. The prompts include
// ones that prefill leaves to a solo call: under 4 rows (the matvec path) and over n_batch.
TEST_CASE("batched prefill equals each prompt prefilled alone, bit for bit", "[llama_batch]") {
    const DType type = GENERATE(DType::F32, DType::F16, DType::Q8_0, DType::Q4_K);
    const int threads = GENERATE(1, 2);
    const std::string type_name(dtype_name(type));
    CAPTURE(type_name, threads);
    test::TempDir dir;
    const LlamaModel model = batch_model(dir, type, 17);
    const int V = model.config.n_vocab;
    const size_t D = size_t(model.config.n_embd);
    ThreadPool pool(threads);
    constexpr int kBatchRows = 24;  // the contexts' n_batch: a longer prompt is run alone
    const std::vector<int> lengths = {9, 2, 17, 30, 5, 4, 12};
    const size_t B = lengths.size();
    uint32_t seed = 99;
    std::vector<std::vector<float>> embd(B);
    for (size_t b = 0; b < B; ++b) {
        embd[b].resize(size_t(lengths[b]) * D);
        for (float& v : embd[b]) {
            seed = seed * 1664525u + 1013904223u;
            v = (float(seed >> 8) / float(1u << 24) - 0.5f) * 0.2f;
        }
    }
    const int32_t next = 7;  // one decode step after the prompt: the cache must match too

    std::vector<std::vector<float>> want_prompt(B, std::vector<float>(size_t(V))), want_next = want_prompt;
    for (size_t b = 0; b < B; ++b) {
        LlamaContext ctx(model, pool, 48, kBatchRows);
        ctx.forward_embeddings(embd[b].data(), lengths[b], 0, want_prompt[b].data(), LogitRows::Last);
        ctx.forward(&next, 1, ctx.n_past(), want_next[b].data());
    }

    std::vector<std::unique_ptr<LlamaContext>> ctxs;
    std::vector<LlamaContext*> ptrs;
    std::vector<const float*> rows;
    for (size_t b = 0; b < B; ++b) {
        ctxs.push_back(std::make_unique<LlamaContext>(model, pool, 48, kBatchRows));
        ptrs.push_back(ctxs.back().get());
        rows.push_back(embd[b].data());
    }
    LlamaBatch batch(model, pool, /*max_seqs=*/3);  // several passes
    std::vector<float> got(B * size_t(V));
    batch.prefill(ptrs.data(), rows.data(), lengths.data(), int(B), got.data());
    std::vector<float> got_next;
    batch.decode(ptrs, std::vector<int32_t>(B, next), got_next);
    for (size_t b = 0; b < B; ++b) {
        INFO("sequence " << b << " (" << lengths[b] << " rows)");
        CHECK(ctxs[b]->n_past() == lengths[b] + 1);
        CHECK(same_bits(got.data() + b * size_t(V), want_prompt[b].data(), size_t(V)));
        CHECK(same_bits(got_next.data() + b * size_t(V), want_next[b].data(), size_t(V)));
    }
    CHECK(ctxs[0]->timings().prefill_tokens == 9);

    // Errors before anything runs: the same context twice, a prompt that does not fit.
    LlamaContext small(model, pool, 8);
    const int too_long = 9;
    const float* r0 = embd[0].data();
    LlamaContext* twice[2] = {ptrs[0], ptrs[0]};
    const float* two_rows[2] = {r0, r0};
    const int two_lengths[2] = {4, 4};
    CHECK_THROWS_WITH(batch.prefill(twice, two_rows, two_lengths, 2, got.data()), Catch::Contains("the same context"));
    LlamaContext* one[1] = {&small};
    CHECK_THROWS_WITH(batch.prefill(one, &r0, &too_long, 1, got.data()), Catch::Contains("do not fit in the context of 8"));
    CHECK(small.n_past() == 0);
}

TEST_CASE("batched decode: bad batches are errors", "[llama_batch]") {
    test::TempDir dir;
    const std::string path = (dir / "m.gguf").string();
    RandomLlamaShape shape = batch_shape();
    shape.n_ctx = 4;
    write_random_llama_gguf(path, shape, DType::F32, 3);
    const LlamaModel model = load_llama_gguf(std::make_shared<const GgufFile>(GgufFile::open(path)));
    ThreadPool pool(2);
    LlamaContext a(model, pool, 4), b(model, pool, 4);
    LlamaBatch batch(model, pool, 4);
    std::vector<float> logits;
    CHECK_THROWS_WITH(batch.decode({&a, &a}, {1, 2}, logits), Catch::Contains("the same context"));
    CHECK_THROWS_AS(batch.decode({&a, &b}, {1, 300}, logits), Error);  // outside the vocabulary
    CHECK(a.n_past() == 0);                                            // nothing ran
    for (int i = 0; i < 4; ++i) batch.decode({&a, &b}, {1, 2}, logits);
    CHECK(a.n_past() == 4);
    CHECK_THROWS_WITH(batch.decode({&a}, {1}, logits), Catch::Contains("fills its context of 4"));
}

TEST_CASE("matmul_rows_as_decode equals one-row matmuls", "[llama_batch][matmul]") {
    const DType type = GENERATE(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q6_K);
    const KernelPath path = GENERATE(KernelPath::Auto, KernelPath::Scalar);
    const int64_t M = GENERATE(1, 3, 4, 9);
    // K: whole 32-wide steps; one 8-wide step after them; a scalar tail (float types only)
    const int64_t K = GENERATE(512, 104, 100), N = 77;  // N not a multiple of any block of rows
    if (K != 512 && type != DType::F32 && type != DType::F16 && type != DType::BF16) return;
    const std::string type_name(dtype_name(type));
    CAPTURE(type_name, int(path), M, K);
    std::vector<uint8_t> wbuf(size_t(*dtype_row_bytes(type, uint64_t(K)) * uint64_t(N)));
    std::vector<float> row(static_cast<size_t>(K)), x(size_t(M * K));
    uint32_t s = 12345;
    auto rnd = [&] {
        s = s * 1664525u + 1013904223u;
        return float(s >> 8) / float(1u << 24) - 0.5f;
    };
    const uint64_t rb = *dtype_row_bytes(type, uint64_t(K));
    for (int64_t n = 0; n < N; ++n) {
        for (float& v : row) v = rnd();
        quantize_row(type, row.data(), wbuf.data() + uint64_t(n) * rb, K);
    }
    for (float& v : x) v = rnd();
    Tensor W;
    W.name = "w";
    W.dtype = type;
    W.n_dims = 2;
    W.ne = {K, N, 1, 1};
    W.nb = contiguous_strides(type, W.ne);
    W.data = wbuf.data();
    ThreadPool pool(2);
    std::vector<float> got(size_t(M * N)), want(size_t(M * N));
    matmul_rows_as_decode(W, x.data(), got.data(), M, pool, path);
    for (int64_t m = 0; m < M; ++m) matmul(W, x.data() + m * K, want.data() + m * N, 1, pool, path);
    CHECK(same_bits(got.data(), want.data(), got.size()));
}
