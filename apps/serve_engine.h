// The model side of `glimpse serve`: one worker thread owns the model, its context and its
// compute threads, and answers jobs one at a time from a bounded queue, so concurrent HTTP
// requests never race on the KV cache. HTTP threads do everything that does not need the
// model (parsing, fetching and decoding images) and then wait on their job's event channel:
//
//   HTTP thread: parse ─ load + decode images ─ submit ─┐          ┌─ Started ─ Delta… ─ Done | Failed
//   worker:                         queue (≤ max_queue) ─┴─ encode images (cache) ─ prefill ─ generate
//
// Requests are not batched with each other: the decoder runs one sequence at a time (the
// KV cache holds one). Image embeddings are cached by the hash of the image's bytes, so a
// picture asked about again skips the vision tower.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "apps/serve_api.h"
#include "text/json_schema.h"
#include "vision/image.h"

namespace glimpse {
struct VlmModel;
struct EncodedImage;
}  // namespace glimpse

namespace glimpse::app::serve {

struct EngineOptions {
    std::string model, mmproj, chat_template;  // as `describe` takes them ("" model: the default)
    std::string model_id;                      // the id /v1/models reports ("" = the model file's stem)
    int threads = 0, ctx = 0, max_tiles = 0;
    std::string device = "auto";  // --device: where both towers run (apps/device_option.h)
    bool verbose = false;         // say on stderr which device and why
    int max_queue = 128;          // jobs waiting for the worker beyond this are refused (503)
    int default_max_tokens = 256; // when a request gives no max_tokens
    int image_cache = 64;         // encoded images kept (least recently used dropped)
};

// One decoded image of a request, with the hash of its bytes (the cache key).
struct RequestImage {
    RgbImage rgb;
    uint64_t hash = 0;
};

// What the worker tells the HTTP thread, in order: Started (the prompt fitted and was
// evaluated), then Deltas, then Done, or Failed at any point.
struct JobEvent {
    enum class Kind { Started, Delta, Done, Failed } kind = Kind::Delta;
    std::string text;                    // Delta, Done: text released by this step (may be empty)
    std::vector<TokenLogprob> logprobs;  // Delta: the token(s) of this step, when asked for
    std::string finish_reason;           // Done: "stop" or "length"
    Usage usage;                         // Started (prompt) and Done (both)
    double prefill_ms = 0, generate_ms = 0;  // Done
    std::optional<ApiError> error;       // Failed
};

class Job {
public:
    Job(ChatRequest req, std::vector<RequestImage> images, std::optional<JsonSchema> schema)
        : request(std::move(req)), images(std::move(images)), schema(std::move(schema)) {}

    const ChatRequest request;
    std::vector<RequestImage> images;
    const std::optional<JsonSchema> schema;  // response_format json_object / json_schema

    void push(JobEvent ev);
    JobEvent pop();  // blocks until an event is there
    // The client went away: the worker stops at its next step.
    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<JobEvent> events_;
    std::atomic<bool> cancelled_{false};
};

class Engine {
public:
    // Loads the model (glimpse::Error on failure, before any thread starts) and starts the worker.
    explicit Engine(const EngineOptions& opt);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const std::string& model_id() const { return model_id_; }
    const PromptStyle& prompt_style() const { return style_; }
    int n_ctx() const;
    const VlmModel& model() const { return *model_; }
    int64_t created() const { return created_; }
    const std::string& device() const { return device_; }  // "cpu" or the Vulkan device

    // Queues a job. ApiError(503) when max_queue jobs are already waiting or the engine stops.
    void submit(std::shared_ptr<Job> job);
    size_t queued() const;
    uint64_t completed() const { return completed_; }
    bool worker_alive() const { return worker_alive_; }
    // Fails every queued job (503) and joins the worker after its current job.
    void stop();

private:
    void worker_loop();
    void run_job(Job& job);
    std::shared_ptr<const EncodedImage> encoded(const RequestImage& img);
    std::shared_ptr<const JsonVocab> json_vocab();  // built on the first structured request

    struct State;  // model, context, compute threads (only the worker touches them)
    EngineOptions opt_;
    std::unique_ptr<VlmModel> model_;
    std::unique_ptr<State> state_;
    std::string model_id_;
    std::string device_;
    PromptStyle style_;
    int64_t created_ = 0;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> queue_;
    bool stopping_ = false;
    std::atomic<bool> worker_alive_{false};
    std::atomic<uint64_t> completed_{0};
    std::thread worker_;

    std::shared_ptr<const JsonVocab> json_vocab_;  // worker only
    // Image cache (worker only): hash → embeddings, most recently used first.
    std::list<std::pair<uint64_t, std::shared_ptr<const EncodedImage>>> lru_;
    std::unordered_map<uint64_t, decltype(lru_)::iterator> cache_;
};

// The compiled schema of a response_format (nullopt for "text"). ApiError(400) naming
// response_format.json_schema.schema for a schema outside the supported subset.
std::optional<JsonSchema> compile_response_format(const ChatRequest& r);

// FNV-1a 64 of the bytes (the image cache key).
uint64_t content_hash(const uint8_t* data, size_t n);

}  // namespace glimpse::app::serve
