// The sampling loop after a prompt has been evaluated: the caller has run the prompt through
// the context (text, or text mixed with image embeddings) and holds the last position's
// logits; this draws tokens one at a time until a stop token, max_tokens, a full context, or
// on_token returning false, or (with opts.constraint) a complete document.
// generate() in text/llama_forward.h is this after a text prefill.
#pragma once

#include <functional>
#include <vector>

#include "text/llama_forward.h"

namespace glimpse {

// Whether the tokens after the first may be greedy picks made on the device
// (LlamaContext::decode_greedy): the context can, the sampler takes the argmax of the logits as
// they are (temperature 0 or top-k 1, no repetition penalty), and nothing masks them (a
// constraint) or reads them (logits_read: --show-probs).
bool picks_on_device(const LlamaContext& ctx, const Sampler& sampler, const TokenConstraint* constraint,
                     bool logits_read);

// The greedy picks after `first` made on the device (LlamaContext::decode_greedy), at most
// `steps`: pick i (i = 1, 2, ...) goes to take(pick, i, n_past), n_past being the positions fed
// before it (ctx.n_past() at the call, plus i), and take returning false ends them. Returns the
// picks made; the tokens fed are `first` and every pick but the last. The generation loops of
// continue_generation, ChatSession::ask and caption share it.
std::vector<int32_t> greedy_picks(LlamaContext& ctx, int32_t first, int steps,
                                  const std::function<bool(int32_t pick, int i, int n_past)>& take);

// logits [n_vocab]: the last prompt position's; overwritten as generation proceeds, except where
// the tokens after the first are greedy picks made on the Vulkan device
// (LlamaContext::decode_greedy: a greedy sampler without a penalty, no constraint, no on_step),
// whose logits never reach the host. The sampler must already have seen the prompt ids (for
// its repetition penalty). Either way the same tokens, and n_past() ends where it would.
GenerateResult continue_generation(LlamaContext& ctx, std::vector<float>& logits, Sampler& sampler,
                                   const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token);

}  // namespace glimpse
