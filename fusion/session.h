// A multi-turn conversation about images, kept in one LlamaContext: each turn evaluates only
// what is new (the previous answer's closing tokens, the new user turn, its images), so the
// KV cache carries the conversation. Images are encoded once and cached by the hash of their
// file bytes (a /reset keeps the cache). A conversation can be saved and loaded again:
//
//   file = header { "GLMPCHAT", u32 version, u64 model fingerprint, template name }
//          transcript (system prompt, messages), encoded images (grid + embeddings),
//          the forward calls that filled the KV cache, in order (token runs / image rows),
//          the generated token not yet fed, the turn count, "END!"
//
// Loading replays those forward calls in the same order and the same sizes, which rebuilds
// the KV cache bit for bit (the same arithmetic on the same inputs), so the next answer's
// logits equal those of the process that saved it. The fingerprint (model shapes and the
// first bytes of the embedding tables) makes a file from another model an error, not garbage.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fusion/vlm.h"
#include "text/sampler.h"
#include "text/token_constraint.h"

namespace glimpse {

struct SessionOptions {
    std::optional<std::string> system;  // nullopt = the template's default, "" = none
    ImageOptions image;
    bool reuse_cache = true;  // false: every turn re-evaluates the whole conversation (for checks)
};

struct TurnResult {
    std::string text;               // the answer as released (stop strings removed)
    std::vector<int32_t> tokens;    // generated ids, without a stop token
    std::string stop;               // "eog", "stop_string", "length", "context_full", "complete" (constraint)
    int new_positions = 0;          // positions evaluated for the question (cache reuse: only the new turn)
    double prefill_ms = 0, generate_ms = 0;
};

class ChatSession {
public:
    ChatSession(const VlmModel& m, LlamaContext& ctx, ThreadPool& pool, SessionOptions opt);

    // Adds an image to the next question. Returns true if it came from the cache (its bytes
    // were seen before: no ViT run). Error(BadInput) naming the file for a bad image.
    bool add_image(const std::string& path, ImageTimings* t = nullptr);

    // One question and its answer, streamed through on_text. Error(Usage) starting with
    // "the context is full" when the question does not fit (nothing changes then).
    // constraint (optional, not owned, fresh for this answer): restricts the answer's tokens
    // (structured output, text/json_schema.h); the answer ends with stop "complete" once its
    // document is.
    TurnResult ask(const std::string& question, const SamplerParams& sampling, int max_tokens,
                   const std::vector<std::string>& stop_strings, const std::function<void(const std::string&)>& on_text,
                   const std::function<void(const float* logits, int n_vocab, int32_t chosen)>& on_step = {},
                   TokenConstraint* constraint = nullptr);

    void reset();  // forget the conversation (the image cache stays)
    void save(const std::string& path) const;
    // Error(BadInput) for a file that is not a glimpse conversation, is damaged or of another
    // version; Error(Usage) for one saved with another model or template, or one that does
    // not fit this context. The current conversation is kept on error.
    void load(const std::string& path);

    int n_past() const { return ctx_.n_past(); }
    int n_ctx() const { return ctx_.n_ctx(); }
    int turns() const { return turns_; }
    size_t pending_images() const { return pending_.size(); }
    const std::vector<ChatMessage>& transcript() const { return messages_; }

    // What identifies the model a conversation belongs to.
    static uint64_t fingerprint(const VlmModel& m);

    // One forward call that filled the cache: a token run or rows of one image.
    struct Call {
        std::vector<int32_t> tokens;
        int image = -1;
        int embd_row = 0, n_rows = 0;
        int n_positions() const { return image >= 0 ? n_rows : int(tokens.size()); }
    };

private:
    std::string turn_text(const std::string& content) const;
    std::vector<Call> turn_calls(const std::string& question);
    void forward(const Call& c, std::vector<float>* logits);
    std::vector<int32_t> history_ids() const;

    const VlmModel& m_;
    LlamaContext& ctx_;
    ThreadPool& pool_;
    SessionOptions opt_;
    std::map<uint64_t, std::shared_ptr<const EncodedImage>> cache_;  // by file-content hash
    // The conversation.
    std::vector<std::shared_ptr<const EncodedImage>> images_;  // used in this conversation, in order
    std::vector<int> pending_;                                 // indices into images_ for the next question
    std::vector<ChatMessage> messages_;
    std::vector<Call> calls_;       // what the KV cache holds, in order
    std::vector<int32_t> unfed_;    // generated but not yet run through the model (at most one)
    int turns_ = 0;
};

}  // namespace glimpse
