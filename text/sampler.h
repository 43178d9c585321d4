// Choosing the next token from the logits, and knowing when to stop.
//
// Sampler::sample applies, in this order (Hugging Face's LogitsProcessor order):
//   1. repetition penalty (CTRL, as HF and llama.cpp): for every id among the last
//      `repeat_last_n` accepted ids, logit > 0 ? logit / penalty : logit · penalty;
//   2. temperature 0 (or top_k 1): argmax, ties to the lowest id (how the golden runs pick);
//   3. otherwise p = softmax(logit / temperature) over the candidates, then
//      top-k (keep the k largest), top-p (keep the smallest most-likely prefix whose mass
//      reaches p), min-p (keep p_i >= min_p · p_max), renormalise, and draw with the seeded
//      generator (std::mt19937_64: the same seed gives the same tokens on every platform).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace glimpse {

struct SamplerParams {
    float temperature = 0.0f;     // 0 = greedy
    int top_k = 0;                // 0 = off
    float top_p = 1.0f;           // 1 = off
    float min_p = 0.0f;           // 0 = off
    float repeat_penalty = 1.0f;  // 1 = off
    int repeat_last_n = 64;       // ids the penalty looks back over (prompt included); -1 = all
    uint64_t seed = 0;
};

// Throws Error(Usage) naming the option for values outside their range (temperature < 0,
// top_k < 0, top_p outside (0, 1], min_p outside [0, 1], repeat_penalty <= 0, ...).
void validate(const SamplerParams& p);

struct TokenProb {
    int32_t id = 0;
    float prob = 0;   // softmax of the temperature-scaled logits over the whole vocabulary
    float logit = 0;  // the raw logit
};

// The id of the largest logit, the lowest id among equals. n > 0.
int32_t argmax(const float* logits, int n);

// The n most likely tokens, most likely first (ties: lower id first), with their
// probabilities under softmax(logit / temperature); temperature <= 0 counts as 1. This is
// what `--show-probs N` prints.
std::vector<TokenProb> top_candidates(const float* logits, int n_vocab, int n, float temperature);

class Sampler {
public:
    explicit Sampler(const SamplerParams& p);  // validates p

    // The next token for these logits [n_vocab] (not modified).
    int32_t sample(const float* logits, int n_vocab);
    // Records an id in the history the repetition penalty looks at (prompt and generated ids).
    void accept(int32_t id);
    // Forgets the history and restarts the generator from the seed.
    void reset();

    const SamplerParams& params() const { return params_; }

private:
    void apply_penalty(int n_vocab);
    int32_t draw(int n_vocab);

    SamplerParams params_;
    std::mt19937_64 rng_;
    std::vector<int32_t> history_;
    std::vector<float> logits_;      // penalised copy
    std::vector<TokenProb> cand_;    // candidates of the current draw
};

// Stop strings over streamed text. Text that could still turn out to be the start of a stop
// string is held back until it cannot; once a stop string appears, everything before it has
// been released and nothing after it will be.
class StopStrings {
public:
    explicit StopStrings(std::vector<std::string> stops);

    // Adds generated text; returns the part now safe to show.
    std::string feed(std::string_view text);
    // The held-back remainder at the end of generation (empty after a stop).
    std::string flush();
    bool stopped() const { return stopped_; }

private:
    std::vector<std::string> stops_;
    std::string pending_;
    bool stopped_ = false;
};

}  // namespace glimpse
