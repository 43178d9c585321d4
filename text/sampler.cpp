#include "text/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>

#include "core/error.h"

namespace glimpse {

namespace {

// Larger logit first; the lower id among equals (the golden runs' tie rule).
bool more_likely(const TokenProb& a, const TokenProb& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Sorts the k most likely of `c` to the front and drops the rest.
void keep_top(std::vector<TokenProb>& c, size_t k) {
    k = std::min(k, c.size());
    std::partial_sort(c.begin(), c.begin() + std::ptrdiff_t(k), c.end(), more_likely);
    c.resize(k);
}

// prob_i = exp((logit_i − max) / T) / Σ, summed in double.
void softmax(std::vector<TokenProb>& c, float temperature) {
    float max = -INFINITY;
    for (const auto& t : c) max = std::max(max, t.logit);
    double sum = 0;
    for (auto& t : c) {
        t.prob = std::exp((t.logit - max) / temperature);
        sum += t.prob;
    }
    for (auto& t : c) t.prob = float(t.prob / sum);
}

[[noreturn]] void bad(const std::string& option, const std::string& why) {
    throw Error(ErrorKind::Usage, option + ": " + why);
}

}  // namespace

void validate(const SamplerParams& p) {
    if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) bad("--temp", "must be a number >= 0");
    if (p.top_k < 0) bad("--top-k", "must be >= 0 (0 = off)");
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) bad("--top-p", "must be in (0, 1] (1 = off)");
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) bad("--min-p", "must be in [0, 1] (0 = off)");
    if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty))
        bad("--repeat-penalty", "must be a number > 0 (1 = off)");
    if (p.repeat_last_n < -1) bad("--repeat-last-n", "must be >= -1 (-1 = the whole history)");
}

int32_t argmax(const float* logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; ++i)
        if (logits[i] > logits[best]) best = i;
    return best;
}

std::vector<TokenProb> top_candidates(const float* logits, int n_vocab, int n, float temperature) {
    std::vector<TokenProb> c(size_t(std::max(n_vocab, 0)));
    for (int i = 0; i < n_vocab; ++i) c[size_t(i)] = {i, 0.0f, logits[i]};
    softmax(c, temperature > 0.0f ? temperature : 1.0f);
    keep_top(c, size_t(std::max(n, 0)));
    return c;
}

Sampler::Sampler(const SamplerParams& p) : params_(p), rng_(p.seed) { validate(p); }

void Sampler::accept(int32_t id) { history_.push_back(id); }

void Sampler::reset() {
    history_.clear();
    rng_.seed(params_.seed);
}

void Sampler::apply_penalty(int n_vocab) {
    if (params_.repeat_penalty == 1.0f || history_.empty()) return;
    const size_t n = params_.repeat_last_n < 0 ? history_.size()
                                               : std::min(history_.size(), size_t(params_.repeat_last_n));
    std::unordered_set<int32_t> seen(history_.end() - std::ptrdiff_t(n), history_.end());
    for (int32_t id : seen) {
        if (id < 0 || id >= n_vocab) continue;
        float& l = logits_[size_t(id)];
        l = l > 0.0f ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
    if (n_vocab <= 0) throw Error(ErrorKind::Usage, "sample: empty vocabulary");
    logits_.assign(logits, logits + n_vocab);
    apply_penalty(n_vocab);
    if (params_.temperature <= 0.0f || params_.top_k == 1) return argmax(logits_.data(), n_vocab);
    return draw(n_vocab);
}

int32_t Sampler::draw(int n_vocab) {
    cand_.resize(size_t(n_vocab));
    for (int i = 0; i < n_vocab; ++i) cand_[size_t(i)] = {i, 0.0f, logits_[size_t(i)]};
    if (params_.top_k > 0) keep_top(cand_, size_t(params_.top_k));
    else if (params_.top_p < 1.0f || params_.min_p > 0.0f) std::sort(cand_.begin(), cand_.end(), more_likely);
    softmax(cand_, params_.temperature);
    if (params_.top_p < 1.0f) {  // cand_ is sorted here
        double mass = 0;
        size_t keep = 0;
        while (keep < cand_.size() && mass < params_.top_p) mass += cand_[keep++].prob;
        cand_.resize(std::max<size_t>(keep, 1));
    }
    if (params_.min_p > 0.0f) {
        const float p_max = cand_.front().prob;  // sorted: the first is the most likely
        const float cut = params_.min_p * p_max;
        cand_.erase(std::remove_if(cand_.begin() + 1, cand_.end(), [&](const TokenProb& t) { return t.prob < cut; }),
                    cand_.end());
    }
    double total = 0;
    for (const auto& t : cand_) total += t.prob;
    // u in [0, 1) from the top 53 bits: exactly reproducible, unlike std::uniform_real_distribution.
    const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0) * total;
    double acc = 0;
    for (const auto& t : cand_) {
        acc += t.prob;
        if (u < acc) return t.id;
    }
    return cand_.back().id;  // rounding left u at the very top
}

// ---- stop strings ------------------------------------------------------------------------------

StopStrings::StopStrings(std::vector<std::string> stops) {
    for (auto& s : stops)
        if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopStrings::feed(std::string_view text) {
    if (stopped_) return {};
    pending_ += text;
    size_t first = std::string::npos;
    for (const auto& s : stops_) first = std::min(first, pending_.find(s));
    if (first != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, first);
        pending_.clear();
        return out;
    }
    // Hold back the longest tail of pending_ that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const auto& s : stops_)
        for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n)
            if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
                hold = n;
                break;
            }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
}

std::string StopStrings::flush() {
    std::string out = stopped_ ? std::string() : pending_;
    pending_.clear();
    return out;
}

}  // namespace glimpse
