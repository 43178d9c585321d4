#include "text/generation.h"

#include <algorithm>

#include "text/sampler.h"
#include "text/token_constraint.h"

namespace glimpse {

bool picks_on_device(const LlamaContext& ctx, const Sampler& sampler, const TokenConstraint* constraint,
                     bool logits_read) {
    const SamplerParams& p = sampler.params();
    return ctx.greedy_on_device() && !constraint && !logits_read && (p.temperature <= 0.0f || p.top_k == 1) &&
           p.repeat_penalty == 1.0f;
}

std::vector<int32_t> greedy_picks(LlamaContext& ctx, int32_t first, int steps,
                                  const std::function<bool(int32_t, int, int)>& take) {
    const int pos0 = ctx.n_past();
    std::vector<int32_t> picks(size_t(std::max(steps, 0)));
    int i = 1;
    const int made = ctx.decode_greedy(first, int(picks.size()), picks.data(), [&](int32_t pick) {
        const bool more = take(pick, i, pos0 + i);
        ++i;
        return more;
    });
    picks.resize(size_t(made));
    return picks;
}

GenerateResult continue_generation(LlamaContext& ctx, std::vector<float>& logits, Sampler& sampler,
                                   const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token) {
    GenerateResult result;
    const int n_vocab = ctx.config().n_vocab;
    logits.resize(size_t(n_vocab));
    // Token i of the generation, drawn with n_past positions fed: false ends generation.
    auto take = [&](int32_t id, int i, int n_past) {
        if (std::find(opts.stop_tokens.begin(), opts.stop_tokens.end(), id) != opts.stop_tokens.end()) {
            result.stopped_by_token = true;
            return false;
        }
        sampler.accept(id);
        if (opts.constraint) opts.constraint->accept(id);
        result.tokens.push_back(id);
        if (on_token && !on_token(id)) {
            result.stopped_by_callback = true;
            return false;
        }
        if (opts.constraint && opts.constraint->complete()) {
            result.stopped_by_constraint = true;
            return false;
        }
        return i + 1 < opts.max_tokens && n_past < ctx.n_ctx();
    };
    auto draw = [&] {
        if (opts.constraint) opts.constraint->mask(logits.data(), n_vocab);
        const int32_t id = sampler.sample(logits.data(), n_vocab);
        if (opts.on_step) opts.on_step(logits.data(), n_vocab, id);
        return id;
    };
    if (opts.max_tokens <= 0) return result;
    int32_t id = draw();
    if (!take(id, 0, ctx.n_past())) return result;
    if (picks_on_device(ctx, sampler, opts.constraint, bool(opts.on_step))) {
        // Every later token is picked on the device, the next step running while the host
        // takes the pick before; take() stops it at max_tokens or a full context at the latest.
        greedy_picks(ctx, id, std::min(opts.max_tokens - 1, ctx.n_ctx() - ctx.n_past()), take);
        return result;
    }
    for (int i = 1;; ++i) {
        ctx.forward(&id, 1, ctx.n_past(), logits.data(), LogitRows::Last);
        id = draw();
        if (!take(id, i, ctx.n_past())) break;
    }
    return result;
}

}  // namespace glimpse
