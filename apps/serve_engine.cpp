#include "apps/serve_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <random>

#include "apps/device_option.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "text/generation.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

namespace glimpse::app::serve {

namespace {

using Clock = std::chrono::steady_clock;

// log softmax(logits / T): lp(id) = (logit[id] - max) / T - log Σ exp((logit - max) / T);
// T <= 0 counts as 1 (the model's own distribution), as top_candidates does.
struct LogSoftmax {
    float t = 1, mx = -INFINITY;
    double lse = 0;
    const float* logits;
    LogSoftmax(const float* lg, int n_vocab, float temperature) : t(temperature > 0 ? temperature : 1.0f), logits(lg) {
        for (int i = 0; i < n_vocab; ++i) mx = std::max(mx, lg[i]);
        double sum = 0;
        for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(lg[i] - mx) / t);
        lse = std::log(sum);
    }
    float operator()(int32_t id) const { return float(double(logits[id] - mx) / t - lse); }
};

ApiError as_api_error(const Error& e) {
    switch (e.kind()) {
        case ErrorKind::Usage:
        case ErrorKind::BadInput: return ApiError(400, e.what(), "messages");
        default: return ApiError(500, e.what());
    }
}

}  // namespace

uint64_t content_hash(const uint8_t* data, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        h ^= data[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

// ---- Job -------------------------------------------------------------------------------------

void Job::push(JobEvent ev) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(std::move(ev));
    }
    cv_.notify_one();
}

JobEvent Job::pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !events_.empty(); });
    JobEvent ev = std::move(events_.front());
    events_.pop_front();
    return ev;
}

// ---- Engine ----------------------------------------------------------------------------------

struct Engine::State {
    ThreadPool pool;
    LlamaContext ctx;
    State(const VlmModel& m, int threads, int n_ctx) : pool(threads), ctx(m.text, pool, n_ctx) {}
};

Engine::Engine(const EngineOptions& opt) : opt_(opt) {
    const Placement placement = open_device(DeviceArgs{opt.device}, opt.verbose);
    model_ = std::make_unique<VlmModel>(open_vlm(opt.model, opt.mmproj, opt.chat_template));
    place_vlm(placement, *model_, opt.verbose);
    device_ = placement.label();
    state_ = std::make_unique<State>(*model_, opt.threads, opt.ctx);
    model_id_ = opt.model_id.empty() ? std::filesystem::path(opt.model).stem().string() : opt.model_id;
    style_.marker = model_->marker();
    style_.newline_after_image = model_->layout == ImageLayout::Llava;
    created_ = int64_t(std::time(nullptr));
    worker_alive_ = true;
    worker_ = std::thread([this] { worker_loop(); });
}

Engine::~Engine() { stop(); }

int Engine::n_ctx() const { return state_->ctx.n_ctx(); }

void Engine::submit(std::shared_ptr<Job> job) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) throw ApiError(503, "the server is shutting down", "", "server_shutting_down");
        if (int(queue_.size()) >= opt_.max_queue)
            throw ApiError(503,
                           "the server is busy: " + std::to_string(queue_.size()) +
                               " requests are already waiting (--max-queue); retry later",
                           "", "server_busy");
        queue_.push_back(std::move(job));
    }
    cv_.notify_one();
}

size_t Engine::queued() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
}

void Engine::stop() {
    std::deque<std::shared_ptr<Job>> left;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ && !worker_.joinable()) return;
        stopping_ = true;
        left.swap(queue_);
    }
    cv_.notify_all();
    for (auto& j : left) {
        JobEvent ev;
        ev.kind = JobEvent::Kind::Failed;
        ev.error = ApiError(503, "the server is shutting down", "", "server_shutting_down");
        j->push(std::move(ev));
    }
    if (worker_.joinable()) worker_.join();
}

void Engine::worker_loop() {
    for (;;) {
        std::shared_ptr<Job> job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) break;  // stopping
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        JobEvent failed;
        failed.kind = JobEvent::Kind::Failed;
        try {
            run_job(*job);
            continue;
        } catch (const ApiError& e) {
            failed.error = e;
        } catch (const Error& e) {
            failed.error = as_api_error(e);
        } catch (const std::bad_alloc&) {
            failed.error = ApiError(500, "out of memory while answering");
        } catch (const std::exception& e) {
            failed.error = ApiError(500, std::string("internal error: ") + e.what());
        }
        job->push(std::move(failed));
    }
    worker_alive_ = false;
}

std::shared_ptr<const EncodedImage> Engine::encoded(const RequestImage& img) {
    if (auto it = cache_.find(img.hash); it != cache_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
        return it->second->second;
    }
    ImageOptions io;
    io.max_tiles = opt_.max_tiles;
    auto enc = std::make_shared<const EncodedImage>(encode_image(*model_, img.rgb, io, state_->pool));
    if (opt_.image_cache > 0) {
        lru_.emplace_front(img.hash, enc);
        cache_[img.hash] = lru_.begin();
        while (int(lru_.size()) > opt_.image_cache) {
            cache_.erase(lru_.back().first);
            lru_.pop_back();
        }
    }
    return enc;
}

std::shared_ptr<const JsonVocab> Engine::json_vocab() {
    if (!json_vocab_) json_vocab_ = std::make_shared<const JsonVocab>(*model_->tokenizer);
    return json_vocab_;
}

std::optional<JsonSchema> compile_response_format(const ChatRequest& r) {
    if (r.response_format == "text") return std::nullopt;
    if (r.response_format == "json_object") return JsonSchema::any_object();
    try {
        return JsonSchema::parse(r.schema_text, "response_format.json_schema.schema");
    } catch (const Error& e) {
        throw ApiError(400, e.what(), "response_format.json_schema.schema", "invalid_json_schema");
    }
}

void Engine::run_job(Job& job) {
    const ChatRequest& req = job.request;
    const VlmModel& m = *model_;
    LlamaContext& ctx = state_->ctx;

    std::vector<std::shared_ptr<const EncodedImage>> encs;
    std::vector<const EncodedImage*> images;
    std::vector<ImageGrid> grids;
    for (RequestImage& img : job.images) {
        encs.push_back(encoded(img));
        images.push_back(encs.back().get());
        grids.push_back(encs.back()->grid);
        img.rgb = RgbImage();  // the pixels are not needed while the answer is generated
    }

    // No system message: no system prompt (as `describe` without --system).
    std::vector<ChatMessage> msgs;
    if (!req.has_system) msgs.push_back({"system", ""});
    msgs.insert(msgs.end(), req.messages.begin(), req.messages.end());
    MmPrompt prompt;
    try {
        prompt = assemble_prompt(m.chat.render(msgs, true), m.marker(), grids, m.layout, *m.tokenizer, true);
    } catch (const Error& e) {
        throw ApiError(e.kind() == ErrorKind::Model ? 500 : 400, e.what(), "messages");
    }
    const int n_prompt = prompt.n_positions();
    if (n_prompt + 1 > ctx.n_ctx())
        throw ApiError(400,
                       "the prompt is " + std::to_string(n_prompt) + " tokens (" +
                           std::to_string(prompt.n_image_positions()) + " of them image tokens), and the context is " +
                           std::to_string(ctx.n_ctx()) + " (start the server with a larger --ctx)",
                       "messages", "context_length_exceeded");
    const int max_tokens = std::min(req.max_tokens.value_or(opt_.default_max_tokens), ctx.n_ctx() - n_prompt);

    const auto t0 = Clock::now();
    ctx.reset();
    std::vector<float> logits;
    eval_prompt(ctx, prompt, images, logits);
    const auto t1 = Clock::now();
    JobEvent started;
    started.kind = JobEvent::Kind::Started;
    started.usage.prompt_tokens = n_prompt;
    job.push(std::move(started));

    SamplerParams sp = req.sampling;
    if (!req.seed_given) sp.seed = std::random_device{}();
    Sampler sampler(sp);
    for (const PromptPiece& p : prompt.pieces)
        for (int32_t id : p.tokens) sampler.accept(id);

    GenerateOptions gen;
    gen.max_tokens = max_tokens;
    gen.stop_tokens = m.tokenizer->eog_ids();
    std::unique_ptr<TokenConstraint> constraint;
    if (job.schema) {
        constraint = make_json_constraint(*job.schema, json_vocab());
        gen.constraint = constraint.get();
    }
    std::vector<TokenLogprob> step_logprobs;  // of the token being accepted
    if (req.logprobs)
        gen.on_step = [&](const float* lg, int n_vocab, int32_t chosen) {
            step_logprobs.clear();
            if (m.tokenizer->is_eog(chosen)) return;
            TokenLogprob t;
            t.token = m.tokenizer->token_to_piece(chosen, false);
            const LogSoftmax lp(lg, n_vocab, sp.temperature);
            t.logprob = lp(chosen);
            if (req.top_logprobs > 0)
                for (const TokenProb& c : top_candidates(lg, n_vocab, req.top_logprobs, sp.temperature))
                    t.top.emplace_back(m.tokenizer->token_to_piece(c.id, false), lp(c.id));
            step_logprobs.push_back(std::move(t));
        };

    TokenStream stream(*m.tokenizer);
    StopStrings stops(req.stop);
    const GenerateResult r = continue_generation(ctx, logits, sampler, gen, [&](int32_t id) {
        JobEvent d;
        d.text = stops.feed(stream.push(id));
        d.logprobs = std::move(step_logprobs);
        step_logprobs.clear();
        job.push(std::move(d));
        return !stops.stopped() && !job.cancelled();
    });
    JobEvent done;
    if (!stops.stopped()) {
        done.text = stops.feed(stream.flush());
        done.text += stops.flush();
    }
    done.kind = JobEvent::Kind::Done;
    done.finish_reason = r.stopped_by_token || r.stopped_by_constraint || stops.stopped() ? "stop" : "length";
    done.usage.prompt_tokens = n_prompt;
    done.usage.completion_tokens = int(r.tokens.size());
    done.prefill_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    done.generate_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
    ++completed_;  // before the client can see the answer (and ask /health)
    job.push(std::move(done));
}

}  // namespace glimpse::app::serve
