// Greedy decoding of several sequences through one LlamaBatch, for the batched-decode tests
// (test_llama_batch.cpp on the CPU, test_vk_batch.cpp on a Vulkan device).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "text/llama_batch.h"
#include "text/llama_forward.h"

namespace glimpse::test {

// At step i, every sequence s with i < steps[s] takes the argmax of last[s] (appended to
// tokens[s]), and all of them run as one batch.decode; last[s] becomes the new logits and
// check(i, s) runs for each, then after_pass(i, sequences stepped). Ends when none is left.
inline void greedy_batch_steps(LlamaBatch& batch, const std::vector<LlamaContext*>& ctxs, const std::vector<int>& steps,
                               std::vector<std::vector<float>>& last, std::vector<std::vector<int32_t>>& tokens,
                               const std::function<void(int step, size_t seq)>& check,
                               const std::function<void(int step, size_t n_live)>& after_pass = {}) {
    for (int i = 0;; ++i) {
        std::vector<LlamaContext*> live;
        std::vector<int32_t> toks;
        std::vector<size_t> which;
        for (size_t s = 0; s < ctxs.size(); ++s)
            if (i < steps[s]) {
                const int32_t id = int32_t(std::max_element(last[s].begin(), last[s].end()) - last[s].begin());
                tokens[s].push_back(id);
                live.push_back(ctxs[s]);
                toks.push_back(id);
                which.push_back(s);
            }
        if (live.empty()) return;
        std::vector<float> logits;
        batch.decode(live, toks, logits);
        const size_t V = last[0].size();
        REQUIRE(logits.size() == live.size() * V);
        for (size_t j = 0; j < live.size(); ++j) {
            std::copy_n(logits.data() + j * V, V, last[which[j]].data());
            INFO("sequence " << which[j] << " step " << i);
            check(i, which[j]);
        }
        if (after_pass) after_pass(i, live.size());
    }
}

}  // namespace glimpse::test
