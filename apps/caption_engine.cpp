// The caption pipeline of apps/caption_engine.h: a reader thread that turns files into tiles
// ahead of the model, and batches of images encoded, prefilled and decoded together.
#include "apps/caption_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "core/error.h"
#include "core/scratch.h"
#include "text/generation.h"
#include "text/tokenizer.h"
#include "vision/vit_forward.h"

namespace glimpse::app {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}
double round1(double ms) { return double(int64_t(ms * 10.0 + 0.5)) / 10.0; }

}  // namespace

struct CaptionEngine::Prepared {
    size_t index = 0;
    std::string path;
    std::exception_ptr error;     // why this input has no tiles (classified by the model thread)
    std::vector<RgbImage> tiles;  // uint8 [S][S][3] each, in encoder order
    ImageGrid grid;
    int width = 0, height = 0;
    double read_ms = 0;  // read + decode + preprocess, on the reader thread
};

struct CaptionEngine::Sequence {
    size_t index;
    std::string path;
    LlamaContext* ctx;
    Sampler sampler;
    TokenStream stream;
    StopStrings stops;
    std::string text;
    std::vector<float> logits;  // [n_vocab] to draw the next token from
    int n_tokens = 0;           // accepted so far
    int n_prompt = 0;           // prompt positions
    double ms = 0;

    Sequence(size_t i, std::string p, LlamaContext* c, const CaptionSettings& s, const Tokenizer& tok)
        : index(i), path(std::move(p)), ctx(c), sampler(s.sampling), stream(tok), stops(s.stops) {}
};

namespace {

// The error line of a failed input; Error(Model) / Error(Device) and anything that is not a
// glimpse::Error end the run instead.
nlohmann::ordered_json error_line(const std::string& path, const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const Error& err) {
        if (err.kind() == ErrorKind::Model || err.kind() == ErrorKind::Device) throw;
        return {{"file", path}, {"error", err.what()}};
    }
}

// Weights of both towers, counted from their shapes (the larger matrices only).
int64_t approx_parameters(const VlmModel& m) {
    const LlamaConfig& t = m.text.config;
    const int64_t D = t.n_embd;
    const int64_t text = int64_t(t.n_layers) * (D * (t.q_dim() + 2 * t.kv_dim()) + int64_t(t.q_dim()) * D +
                                                3 * D * t.n_ff) +
                         int64_t(t.n_vocab) * D;
    const VisionConfig& v = m.vision.config;
    const int64_t E = v.n_embd;
    const int64_t vision = int64_t(v.n_layers) * (4 * E * E + 2 * E * v.n_ff) +
                           int64_t(3) * v.patch_size * v.patch_size * E;
    return text + vision;
}

// A model this small runs a lane per thread (caption_engine.h): 8 M parameters are 32 MB in
// F32, about the last-level cache of the machines this was measured on; the default model has
// 1 M, SmolVLM-256M 256 M.
constexpr int64_t kLaneModelParameters = 8'000'000;

int pick_lanes(const VlmModel& m, const ThreadPool& pool, const CaptionSettings& s) {
    if (m.text.vulkan || m.vision.vulkan) return 1;  // the device runs the ops: one lane feeds it
    int lanes = s.lanes > 0 ? s.lanes : approx_parameters(m) <= kLaneModelParameters ? pool.size() : 1;
    return std::max(1, std::min({lanes, s.batch, pool.size()}));
}

}  // namespace

// Reads, decodes and preprocesses the inputs in order on its own thread, at most `capacity`
// images ahead of the model; or, with capacity 0, on the thread that asks for the next input
// (lanes, which keep every core busy themselves: a third thread would only take turns with
// them). The destructor stops the thread (a run ended by an exception).
class CaptionEngine::Reader {
public:
    Reader(const VlmModel& m, const std::vector<CaptionInput>& inputs, const ImageOptions& opt, size_t capacity)
        : m_(m), inputs_(inputs), opt_(opt), capacity_(capacity) {
        if (capacity_ > 0) thread_ = std::thread([this] { loop(); });
    }
    ~Reader() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    // The next input in order; nullopt after the last. Any thread may ask.
    std::optional<Prepared> next() {
        std::unique_lock<std::mutex> lock(mu_);
        if (capacity_ == 0) {
            if (claimed_ == inputs_.size()) return std::nullopt;
            const size_t i = claimed_++;
            lock.unlock();
            return prepare(i);
        }
        cv_.wait(lock, [&] { return !queue_.empty() || done_; });
        if (queue_.empty()) return std::nullopt;
        Prepared p = std::move(queue_.front());
        queue_.pop_front();
        cv_.notify_all();
        return p;
    }

private:
    void loop() {
        for (size_t i = 0; i < inputs_.size(); ++i) {
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return queue_.size() < capacity_ || stop_; });
                if (stop_) break;
            }
            Prepared p = prepare(i);
            std::lock_guard<std::mutex> lock(mu_);
            queue_.push_back(std::move(p));
            cv_.notify_all();
        }
        std::lock_guard<std::mutex> lock(mu_);
        done_ = true;
        cv_.notify_all();
    }

    Prepared prepare(size_t i) {
        const auto t0 = Clock::now();
        Prepared p;
        p.index = i;
        p.path = inputs_[i].path;
        try {
            if (!inputs_[i].error.empty()) throw Error(ErrorKind::BadInput, inputs_[i].error);
            const RgbImage img = load_image(p.path);
            p.width = img.width;
            p.height = img.height;
            p.tiles = preprocess_image(m_, img, opt_, p.grid);
        } catch (...) {
            p.error = std::current_exception();
            p.tiles.clear();
        }
        p.read_ms = ms_since(t0);
        return p;
    }

    const VlmModel& m_;
    const std::vector<CaptionInput>& inputs_;
    ImageOptions opt_;
    size_t capacity_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Prepared> queue_;
    bool done_ = false, stop_ = false;
    size_t claimed_ = 0;  // capacity 0: inputs handed out so far
    std::thread thread_;  // started in the constructor, once every member exists
};

CaptionEngine::CaptionEngine(const VlmModel& m, ThreadPool& pool, CaptionSettings s)
    : m_(m), pool_(pool), s_(std::move(s)) {
    s_.batch = std::max(1, s_.batch);
    lanes_ = pick_lanes(m, pool, s_);
    const int per_lane = (s_.batch + lanes_ - 1) / lanes_;
    for (int i = 0; i < lanes_ * per_lane; ++i) ctxs_.push_back(std::make_unique<LlamaContext>(m.text, pool, s_.ctx));
    for (int l = 0; l < lanes_; ++l) decoders_.push_back(std::make_unique<LlamaBatch>(m.text, pool, per_lane));
}

CaptionEngine::~CaptionEngine() = default;

void CaptionEngine::run(const std::vector<CaptionInput>& inputs,
                        const std::function<void(size_t, const nlohmann::ordered_json&)>& on_result) {
    if (lanes_ <= 1) {
        Reader reader(m_, inputs, s_.image, 2 * size_t(s_.batch) + 1);
        return run_lane(reader, 0, stats_, on_result);
    }
    Reader reader(m_, inputs, s_.image, 0);  // each lane reads its own images

    // Lanes side by side, one per pool thread, each taking its next images from the reader as
    // soon as it is done with the last ones (no lane waits for another). Lines are passed on
    // one at a time; the first lane to fail stops the others at their next group.
    std::mutex emit_mu;
    std::atomic<bool> failed{false};
    std::vector<CaptionStats> st(static_cast<size_t>(lanes_));
    std::exception_ptr error;  // the first lane's failure, rethrown once the lanes' figures are in
    try {
        pool_.run_chunks(lanes_, [&](int l, int) {
            try {
                run_lane(reader, l, st[size_t(l)], [&](size_t i, const nlohmann::ordered_json& line) {
                    std::lock_guard<std::mutex> lock(emit_mu);
                    on_result(i, line);
                }, &failed);
            } catch (...) {
                failed = true;
                throw;
            }
        });
    } catch (...) {
        error = std::current_exception();
    }
    for (const CaptionStats& x : st) stats_ += x;
    if (error) std::rethrow_exception(error);
}

// One lane: groups of up to batch/lanes images from the reader, each captioned by
// caption_group with this lane's decoder and contexts, until the reader is done (or another
// lane failed). A file the reader could not turn into tiles gets its error line at once.
void CaptionEngine::run_lane(Reader& reader, int lane, CaptionStats& st, const Emit& on_result,
                             const std::atomic<bool>* failed) {
    const size_t per_lane = size_t(decoders_[size_t(lane)]->max_seqs());
    const size_t slot0 = size_t(lane) * per_lane;
    std::vector<Prepared> group;
    for (;;) {
        if (failed && *failed) return;
        std::optional<Prepared> p = reader.next();
        if (p) {
            st.read_ms += p->read_ms;
            if (p->error) {
                const auto line = error_line(p->path, p->error);
                ++st.failed;
                on_result(p->index, line);
                continue;
            }
            group.push_back(std::move(*p));
            if (group.size() < per_lane) continue;
        }
        if (!group.empty()) caption_group(group, slot0, *decoders_[size_t(lane)], st, on_result);
        group.clear();
        if (!p) return;
    }
}

// All tiles of the batch, in groups of at most kDefaultVisionBatchRows sequence rows (at least
// one tile): each group is one encode_tiles call, whichever images its tiles come from.
void CaptionEngine::encode_batch(std::vector<Prepared>& batch, std::vector<EncodedImage>& out, std::vector<double>& ms,
                                 CaptionStats& st) {
    const VisionConfig& c = m_.vision.config;
    const size_t tile_floats = size_t(3) * size_t(c.image_size) * size_t(c.image_size);
    const size_t tile_embd = size_t(tokens_per_tile(c)) * size_t(projected_dim(c));
    const int per_group = int(std::max<int64_t>(1, kDefaultVisionBatchRows / std::max(1, c.n_positions())));
    struct TileRef {
        size_t image, tile;
    };
    std::vector<TileRef> tiles;
    out.assign(batch.size(), EncodedImage{});
    for (size_t i = 0; i < batch.size(); ++i) {
        out[i].grid = batch[i].grid;
        out[i].width = batch[i].width;
        out[i].height = batch[i].height;
        out[i].embd.resize(batch[i].tiles.size() * tile_embd);
        for (size_t t = 0; t < batch[i].tiles.size(); ++t) tiles.push_back({i, t});
    }
    const size_t group_max = std::min(tiles.size(), size_t(per_group));
    thread_local std::vector<float> pixels_store, embd_store;  // this lane's (core/scratch.h)
    ScratchFloats pixels(pixels_store, group_max * tile_floats), embd(embd_store, group_max * tile_embd);
    for (size_t g0 = 0; g0 < tiles.size(); g0 += size_t(per_group)) {
        const size_t n = std::min(tiles.size() - g0, size_t(per_group));
        const auto t0 = Clock::now();
        for (size_t k = 0; k < n; ++k) {
            const TileRef& r = tiles[g0 + k];
            normalize_tile_u8(c, batch[r.image].tiles[r.tile].pixels.data(), pixels.data() + k * tile_floats);
        }
        encode_tiles(m_.vision, pixels.data(), int(n), embd.data(), pool_);
        for (size_t k = 0; k < n; ++k) {
            const TileRef& r = tiles[g0 + k];
            std::memcpy(out[r.image].embd.data() + r.tile * tile_embd, embd.data() + k * tile_embd,
                        tile_embd * sizeof(float));
        }
        const double dt = ms_since(t0);
        st.encode_ms += dt;
        for (size_t k = 0; k < n; ++k) ms[tiles[g0 + k].image] += dt / double(n);
    }
    st.tiles += int64_t(tiles.size());
    for (Prepared& p : batch) p.tiles.clear();  // the memory of the next batch's tiles
}

void CaptionEngine::caption_group(std::vector<Prepared>& batch, size_t slot0, LlamaBatch& decoder, CaptionStats& st,
                                  const Emit& on_result) {
    const int V = m_.text.config.n_vocab;
    std::vector<double> ms(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) ms[i] = batch[i].read_ms;
    std::vector<EncodedImage> images;
    encode_batch(batch, images, ms, st);

    // Each prompt into its own context (a prompt that does not fit is that image's error), then
    // all of them prefilled together (LlamaBatch::prefill: one GEMM per weight for all rows).
    const std::vector<int32_t> stop_ids = m_.tokenizer->eog_ids();
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<std::vector<float>> embds;
    const auto t_prompts = Clock::now();
    for (size_t i = 0; i < batch.size(); ++i) {
        auto q = std::make_unique<Sequence>(batch[i].index, batch[i].path, ctxs_[slot0 + i].get(), s_, *m_.tokenizer);
        try {
            const MmPrompt prompt = build_prompt(m_, s_.prompt, {&images[i]}, s_.system);
            q->ctx->reset();
            check_prompt_fits(*q->ctx, prompt);
            embds.push_back(prompt_embeddings(m_.text, prompt, {&images[i]}));
            for (const PromptPiece& piece : prompt.pieces)
                for (int32_t id : piece.tokens) q->sampler.accept(id);
            q->n_prompt = prompt.n_positions();
        } catch (...) {
            const auto line = error_line(batch[i].path, std::current_exception());
            ++st.failed;
            on_result(batch[i].index, line);
            continue;
        }
        q->ms = ms[i];
        seqs.push_back(std::move(q));
    }
    if (!seqs.empty()) {
        std::vector<LlamaContext*> ctxs;
        std::vector<const float*> embd;
        std::vector<int> n_tokens;
        int64_t positions = 0;
        for (size_t k = 0; k < seqs.size(); ++k) {
            ctxs.push_back(seqs[k]->ctx);
            embd.push_back(embds[k].data());
            n_tokens.push_back(seqs[k]->n_prompt);
            positions += seqs[k]->n_prompt;
        }
        std::vector<float> logits(seqs.size() * size_t(V));
        decoder.prefill(ctxs.data(), embd.data(), n_tokens.data(), int(seqs.size()), logits.data());
        const double dt = ms_since(t_prompts);
        st.prefill_ms += dt;
        st.prompt_positions += positions;
        for (size_t k = 0; k < seqs.size(); ++k) {
            Sequence& q = *seqs[k];
            q.logits.assign(logits.begin() + std::ptrdiff_t(k * size_t(V)), logits.begin() + std::ptrdiff_t((k + 1) * size_t(V)));
            q.ms += dt * double(q.n_prompt) / double(positions);
        }
    }
    embds.clear();

    // Decode: each step draws every live caption's next token (as continue_generation does for
    // one), then runs those still going through one batched step.
    auto finish = [&](Sequence& q) {
        if (!q.stops.stopped()) q.text += q.stops.feed(q.stream.flush()) + q.stops.flush();
        const nlohmann::ordered_json line = {
            {"file", q.path}, {"caption", trim(q.text)}, {"tokens", q.n_tokens}, {"ms", round1(q.ms)}};
        ++st.captioned;
        st.generated += q.n_tokens;
        on_result(q.index, line);
    };
    // A token drawn for q with n_past positions fed: false ends its caption.
    auto take = [&](Sequence& q, int32_t id, int n_past) {
        if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) return false;
        q.sampler.accept(id);
        ++q.n_tokens;
        q.text += q.stops.feed(q.stream.push(id));
        return !q.stops.stopped() && q.n_tokens < s_.max_tokens && n_past < q.ctx->n_ctx();
    };
    // Several captions step together (LlamaBatch::decode: on a Vulkan device too, where the run
    // can batch; LlamaBatch::decode_greedy where the device also picks their greedy tokens).
    // Otherwise, where the device picks greedy tokens itself (picks_on_device), each caption's
    // tokens after its first come from LlamaContext::decode_greedy, the device never waiting for
    // the host between them.
    const bool together = seqs.size() > 1 && decoder.steps_together(*seqs[0]->ctx);
    if (!seqs.empty() && !together && s_.max_tokens > 0 &&
        picks_on_device(*seqs[0]->ctx, seqs[0]->sampler, nullptr, false)) {
        for (auto& q : seqs) {
            const auto t0 = Clock::now();
            const int pos0 = q->ctx->n_past();
            const int32_t first = q->sampler.sample(q->logits.data(), V);
            if (take(*q, first, pos0))
                greedy_picks(*q->ctx, first, std::min(s_.max_tokens - 1, q->ctx->n_ctx() - pos0),
                             [&](int32_t pick, int, int n_past) { return take(*q, pick, n_past); });
            const double dt = ms_since(t0);
            st.decode_ms += dt;
            q->ms += dt;
            finish(*q);
        }
        return;
    }
    if (together && s_.max_tokens > 0 &&
        std::all_of(seqs.begin(), seqs.end(), [](const std::unique_ptr<Sequence>& q) {
            return picks_on_device(*q->ctx, q->sampler, nullptr, false);
        })) {
        // Greedy captions stepping together on the device (LlamaBatch::decode_greedy): each
        // caption's first token drawn here from its prefill's logits, the rest picked there.
        const auto t0 = Clock::now();
        std::vector<Sequence*> going;
        std::vector<LlamaContext*> step_ctxs;
        std::vector<int32_t> first;
        for (auto& q : seqs) {
            const int32_t id = q->sampler.sample(q->logits.data(), V);
            if (take(*q, id, q->ctx->n_past())) {
                going.push_back(q.get());
                step_ctxs.push_back(q->ctx);
                first.push_back(id);
            }
        }
        decoder.decode_greedy(step_ctxs.data(), first.data(), int(step_ctxs.size()),
                              [&](int b, int32_t pick, int n_past) { return take(*going[size_t(b)], pick, n_past); });
        const double dt = ms_since(t0);
        st.decode_ms += dt;
        // Each caption's share: its tokens' part of the steps (as the host loop below shares
        // each step among the captions in it), or an equal part where none was drawn.
        int64_t drawn = 0;
        for (auto& q : seqs) drawn += q->n_tokens;
        for (auto& q : seqs) {
            q->ms += drawn > 0 ? dt * double(q->n_tokens) / double(drawn) : dt / double(seqs.size());
            finish(*q);
        }
        return;
    }
    std::vector<Sequence*> live;
    for (auto& q : seqs) live.push_back(q.get());
    std::vector<LlamaContext*> step_ctxs;
    std::vector<int32_t> step_tokens;
    std::vector<float> step_logits;
    while (!live.empty()) {
        // A step's time: the host's draws and the step, as the device-picked paths above count it.
        const auto t0 = Clock::now();
        std::vector<Sequence*> going;
        step_ctxs.clear();
        step_tokens.clear();
        for (Sequence* q : live) {
            bool more = false;
            if (q->n_tokens < s_.max_tokens) {
                const int32_t id = q->sampler.sample(q->logits.data(), V);
                more = take(*q, id, q->ctx->n_past());
                if (more) {
                    going.push_back(q);
                    step_ctxs.push_back(q->ctx);
                    step_tokens.push_back(id);
                }
            }
            if (!more) finish(*q);
        }
        live = std::move(going);
        if (live.empty()) break;
        decoder.decode(step_ctxs, step_tokens, step_logits);
        const double dt = ms_since(t0);
        st.decode_ms += dt;
        for (size_t j = 0; j < live.size(); ++j) {
            live[j]->logits.assign(step_logits.begin() + std::ptrdiff_t(j * size_t(V)),
                                   step_logits.begin() + std::ptrdiff_t((j + 1) * size_t(V)));
            live[j]->ms += dt / double(live.size());
        }
    }
}

}  // namespace glimpse::app
