#include "text/generation.h"

#include <algorithm>

#include "text/sampler.h"
#include "text/token_constraint.h"

namespace glimpse {

GenerateResult continue_generation(LlamaContext& ctx, std::vector<float>& logits, Sampler& sampler,
                                   const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token) {
    GenerateResult result;
    const int n_vocab = ctx.config().n_vocab;
    logits.resize(size_t(n_vocab));
    for (int i = 0; i < opts.max_tokens; ++i) {
        if (opts.constraint) opts.constraint->mask(logits.data(), n_vocab);
        const int32_t id = sampler.sample(logits.data(), n_vocab);
        if (opts.on_step) opts.on_step(logits.data(), n_vocab, id);
        if (std::find(opts.stop_tokens.begin(), opts.stop_tokens.end(), id) != opts.stop_tokens.end()) {
            result.stopped_by_token = true;
            break;
        }
        sampler.accept(id);
        if (opts.constraint) opts.constraint->accept(id);
        result.tokens.push_back(id);
        if (on_token && !on_token(id)) {
            result.stopped_by_callback = true;
            break;
        }
        if (opts.constraint && opts.constraint->complete()) {
            result.stopped_by_constraint = true;
            break;
        }
        if (i + 1 == opts.max_tokens || ctx.n_past() >= ctx.n_ctx()) break;
        ctx.forward(&id, 1, ctx.n_past(), logits.data(), LogitRows::Last);
    }
    return result;
}

}  // namespace glimpse
