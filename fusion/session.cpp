#include "fusion/session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "text/generation.h"

namespace glimpse {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

constexpr char kMagic[8] = {'G', 'L', 'M', 'P', 'C', 'H', 'A', 'T'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kMaxImageFile = uint64_t(1) << 30;  // bytes read to hash and decode one image
// Stands for an assistant answer while rendering the template, to find where turns join.
const std::string kSentinel = "\x01GLIMPSE_ANSWER\x01";

uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t hash_prefix(const Tensor& t, uint64_t h) {
    if (!t.data) return h;
    return fnv1a(t.data, size_t(std::min<uint64_t>(t.bytes(), 4096)), h);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw input_error(path, "no such file");
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) throw input_error(path, "cannot read (" + ec.message() + ")");
    if (size > kMaxImageFile) throw input_error(path, "file is larger than 1 GiB");
    std::ifstream f(path, std::ios::binary);
    std::vector<uint8_t> bytes(size);
    if (!f || !f.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size))) throw input_error(path, "cannot read");
    return bytes;
}

// ---- the file format: little-endian fields appended to a string, read back with bounds ----

struct Writer {
    std::string buf;
    template <class T>
    void put(T v) {
        buf.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    void str(const std::string& s) {
        put(uint64_t(s.size()));
        buf += s;
    }
};

struct Reader {
    const std::string& path;
    const std::string& buf;
    size_t at = 0;

    [[noreturn]] void damaged(const std::string& what) const {
        throw input_error(path, "damaged conversation file: " + what + " at byte " + std::to_string(at));
    }
    void need(uint64_t n, const char* what) const {
        if (n > buf.size() - at) damaged(std::string("truncated reading ") + what);
    }
    template <class T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, buf.data() + at, sizeof v);
        at += sizeof v;
        return v;
    }
    std::string str(const char* what) {
        const uint64_t n = get<uint64_t>(what);
        need(n, what);
        std::string s = buf.substr(at, size_t(n));
        at += size_t(n);
        return s;
    }
    uint32_t count(const char* what, uint32_t max) {
        const uint32_t n = get<uint32_t>(what);
        if (n > max) damaged(std::string(what) + " count " + std::to_string(n) + " is more than " + std::to_string(max));
        return n;
    }
};

}  // namespace

ChatSession::ChatSession(const VlmModel& m, LlamaContext& ctx, ThreadPool& pool, SessionOptions opt)
    : m_(m), ctx_(ctx), pool_(pool), opt_(std::move(opt)) {}

uint64_t ChatSession::fingerprint(const VlmModel& m) {
    const LlamaConfig& c = m.text.config;
    const int shape[] = {c.n_layers, c.n_embd, c.n_heads, c.n_kv_heads, c.head_dim, c.n_ff, c.n_vocab,
                         m.vision.config.n_layers, m.vision.config.image_size, int(m.layout)};
    uint64_t h = fnv1a(shape, sizeof shape);
    h = hash_prefix(m.text.weights.token_embd, h);
    h = hash_prefix(m.text.weights.output_norm, h);
    return hash_prefix(m.vision.weights.patch_w, h);
}

bool ChatSession::add_image(const std::string& path, ImageTimings* t) {
    const std::vector<uint8_t> bytes = read_bytes(path);
    const uint64_t key = fnv1a(bytes.data(), bytes.size(), fnv1a(&opt_.image.max_tiles, sizeof(int)));
    auto it = cache_.find(key);
    const bool cached = it != cache_.end();
    if (!cached) {
        const auto t0 = Clock::now();
        const RgbImage rgb = decode_image(bytes.data(), bytes.size(), path);
        if (t) t->decode_ms += ms_since(t0);
        auto enc = std::make_shared<const EncodedImage>(encode_image(m_, rgb, opt_.image, pool_, t));
        it = cache_.emplace(key, std::move(enc)).first;
    }
    images_.push_back(it->second);
    pending_.push_back(int(images_.size()) - 1);
    return cached;
}

// The text of the next turn: the whole prompt on the first turn; afterwards the closing of
// the previous answer, the user's turn and the assistant's opening, cut out of the template's
// rendering of a conversation whose previous answer is a sentinel.
std::string ChatSession::turn_text(const std::string& content) const {
    if (messages_.empty()) return m_.chat.render_user(content, opt_.system);
    const std::string r = m_.chat.render({{"user", "x"}, {"assistant", kSentinel}, {"user", content}}, true);
    return r.substr(r.find(kSentinel) + kSentinel.size());
}

std::vector<ChatSession::Call> ChatSession::turn_calls(const std::string& question) {
    const std::string& marker = m_.marker();
    std::string content = question;
    for (size_t at; (at = content.find("<__media__>")) != std::string::npos;) content.replace(at, 11, marker);
    size_t n_markers = 0;
    for (size_t at = content.find(marker); at != std::string::npos; at = content.find(marker, at + marker.size())) ++n_markers;
    if (n_markers == 0) {
        std::string prefix;
        for (size_t i = 0; i < pending_.size(); ++i) prefix += marker + (m_.layout == ImageLayout::Llava ? "\n" : "");
        content = prefix + content;
    }
    std::vector<ImageGrid> grids;
    for (int i : pending_) grids.push_back(images_[size_t(i)]->grid);
    const MmPrompt p = assemble_prompt(turn_text(content), marker, grids, m_.layout, *m_.tokenizer, messages_.empty());

    std::vector<Call> calls;
    if (!unfed_.empty()) calls.push_back(Call{unfed_, -1, 0, 0});
    for (const PromptPiece& piece : p.pieces) {
        if (piece.is_image()) calls.push_back(Call{{}, pending_[size_t(piece.image)], piece.embd_row, piece.n_rows});
        else if (!calls.empty() && calls.back().image < 0)
            calls.back().tokens.insert(calls.back().tokens.end(), piece.tokens.begin(), piece.tokens.end());
        else calls.push_back(Call{piece.tokens, -1, 0, 0});
    }
    messages_.push_back({"user", content});  // undone by the caller when the turn does not fit
    return calls;
}

void ChatSession::forward(const Call& c, std::vector<float>* logits) {
    float* out = logits ? logits->data() : nullptr;
    const LogitRows rows = logits ? LogitRows::Last : LogitRows::None;
    if (c.image >= 0) {
        const EncodedImage& img = *images_[size_t(c.image)];
        const float* embd = img.embd.data() + size_t(c.embd_row) * size_t(ctx_.config().n_embd);
        ctx_.forward_embeddings(embd, c.n_rows, ctx_.n_past(), out, rows);
    } else {
        ctx_.forward(c.tokens.data(), int(c.tokens.size()), ctx_.n_past(), out, rows);
    }
    calls_.push_back(c);
}

std::vector<int32_t> ChatSession::history_ids() const {
    std::vector<int32_t> ids;
    for (const Call& c : calls_) ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
    ids.insert(ids.end(), unfed_.begin(), unfed_.end());
    return ids;
}

TurnResult ChatSession::ask(const std::string& question, const SamplerParams& sampling, int max_tokens,
                            const std::vector<std::string>& stop_strings,
                            const std::function<void(const std::string&)>& on_text,
                            const std::function<void(const float*, int, int32_t)>& on_step,
                            TokenConstraint* constraint) {
    const std::vector<Call> calls = turn_calls(question);
    int n_new = 0;
    for (const Call& c : calls) n_new += c.n_positions();
    const int base = opt_.reuse_cache ? ctx_.n_past() : [&] {
        int n = 0;
        for (const Call& c : calls_) n += c.n_positions();
        return n;
    }();
    if (base + n_new + 1 > ctx_.n_ctx()) {
        messages_.pop_back();
        throw Error(ErrorKind::Usage, "the context is full: this question needs " + std::to_string(n_new) +
                                          " positions and " + std::to_string(ctx_.n_ctx() - base) + " of " +
                                          std::to_string(ctx_.n_ctx()) +
                                          " are left; /reset starts over (or restart with a larger --ctx)");
    }
    TurnResult r;
    r.new_positions = n_new;
    std::vector<float> logits(size_t(ctx_.config().n_vocab));
    auto t0 = Clock::now();
    std::vector<Call> todo = calls;
    if (!opt_.reuse_cache) {  // the whole conversation from position 0, as one fresh run would
        todo = calls_;
        todo.insert(todo.end(), calls.begin(), calls.end());
        ctx_.reset();
        calls_.clear();
        r.new_positions = base + n_new;
    }
    for (size_t i = 0; i < todo.size(); ++i) forward(todo[i], i + 1 == todo.size() ? &logits : nullptr);
    r.prefill_ms = ms_since(t0);
    unfed_.clear();
    pending_.clear();

    SamplerParams sp = sampling;
    sp.seed = sampling.seed + uint64_t(turns_);  // each turn its own draw, the same after /load
    Sampler sampler(sp);
    for (int32_t id : history_ids()) sampler.accept(id);
    const std::vector<int32_t> eog = m_.tokenizer->eog_ids();
    TokenStream stream(*m_.tokenizer);
    StopStrings stops(stop_strings);
    auto emit = [&](const std::string& s) {
        r.text += s;
        if (!s.empty() && on_text) on_text(s);
    };
    t0 = Clock::now();
    r.stop = "length";
    const int n_vocab = ctx_.config().n_vocab;
    auto draw = [&] {
        if (constraint) constraint->mask(logits.data(), n_vocab);
        const int32_t id = sampler.sample(logits.data(), n_vocab);
        if (on_step) on_step(logits.data(), n_vocab, id);
        return id;
    };
    // Token i of the answer, drawn with n_past positions fed: false ends the turn.
    auto take = [&](int32_t id, int i, int n_past) {
        if (std::find(eog.begin(), eog.end(), id) != eog.end()) {
            r.stop = "eog";
            return false;
        }
        sampler.accept(id);
        if (constraint) constraint->accept(id);
        r.tokens.push_back(id);
        emit(stops.feed(stream.push(id)));
        const bool full = n_past + 1 >= ctx_.n_ctx();
        const bool complete = constraint && constraint->complete();
        if (stops.stopped() || complete || i + 1 == max_tokens || full) {
            r.stop = stops.stopped() ? "stop_string" : complete ? "complete" : full ? "context_full" : "length";
            unfed_ = {id};  // run through the model at the start of the next turn
            return false;
        }
        return true;
    };
    int32_t id = 0;
    const bool more = max_tokens > 0 && take(id = draw(), 0, ctx_.n_past());
    if (more && picks_on_device(ctx_, sampler, constraint, bool(on_step))) {
        // Greedy picks on the device, each step queued before the host takes the pick before
        // (LlamaContext::decode_greedy); take() stops it at max_tokens or a full context at
        // the latest. The tokens fed are the first and every pick but the last.
        const int steps = std::min(max_tokens - 1, ctx_.n_ctx() - ctx_.n_past() - 1);
        const std::vector<int32_t> picks = greedy_picks(ctx_, id, steps, take);
        calls_.push_back(Call{{id}, -1, 0, 0});
        for (size_t k = 0; k + 1 < picks.size(); ++k) calls_.push_back(Call{{picks[k]}, -1, 0, 0});
    } else if (more) {
        for (int i = 1;; ++i) {
            forward(Call{{id}, -1, 0, 0}, &logits);
            id = draw();
            if (!take(id, i, ctx_.n_past())) break;
        }
    }
    if (!stops.stopped()) emit(stops.feed(stream.flush()) + stops.flush());
    r.generate_ms = ms_since(t0);
    messages_.push_back({"assistant", r.text});
    ++turns_;
    return r;
}

void ChatSession::reset() {
    ctx_.reset();
    images_.clear();
    pending_.clear();
    messages_.clear();
    calls_.clear();
    unfed_.clear();
    turns_ = 0;
}

void ChatSession::save(const std::string& path) const {
    Writer w;
    w.buf.append(kMagic, sizeof kMagic);
    w.put(kVersion);
    w.put(fingerprint(m_));
    w.str(std::string(m_.chat.name()));
    w.put(uint8_t(opt_.system.has_value()));
    w.str(opt_.system.value_or(""));
    w.put(uint32_t(messages_.size()));
    for (const ChatMessage& msg : messages_) {
        w.str(msg.role);
        w.str(msg.content);
    }
    w.put(uint32_t(images_.size()));
    for (const auto& img : images_) {
        for (int v : {img->grid.rows, img->grid.cols, img->grid.tokens_per_tile, img->width, img->height}) w.put(int32_t(v));
        w.put(uint64_t(img->embd.size()));
        w.buf.append(reinterpret_cast<const char*>(img->embd.data()), img->embd.size() * sizeof(float));
    }
    w.put(uint32_t(calls_.size()));
    for (const Call& c : calls_) {
        for (int v : {c.image, c.embd_row, c.n_rows}) w.put(int32_t(v));
        w.put(uint32_t(c.tokens.size()));
        for (int32_t id : c.tokens) w.put(id);
    }
    w.put(uint32_t(unfed_.size()));
    for (int32_t id : unfed_) w.put(id);
    w.put(uint32_t(turns_));
    w.buf += "END!";

    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f || !f.write(w.buf.data(), std::streamsize(w.buf.size())) || !f.flush())
            throw input_error(path, "cannot write the conversation");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw input_error(path, "cannot write the conversation (rename failed)");
}

void ChatSession::load(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw input_error(path, "cannot read (no such file?)");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string buf = ss.str();
    Reader r{path, buf};
    if (buf.size() < sizeof kMagic || std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0)
        throw input_error(path, "not a glimpse conversation file");
    r.at = sizeof kMagic;
    const uint32_t version = r.get<uint32_t>("the version");
    if (version != kVersion)
        throw input_error(path, "conversation file version " + std::to_string(version) + ", this glimpse reads version " +
                                    std::to_string(kVersion));
    if (r.get<uint64_t>("the model fingerprint") != fingerprint(m_))
        throw Error(ErrorKind::Usage, path + ": this conversation was saved with another model; load it with that model");
    const std::string tmpl = r.str("the chat template");
    if (tmpl != m_.chat.name())
        throw Error(ErrorKind::Usage, path + ": this conversation uses the chat template " + tmpl + ", not " +
                                          std::string(m_.chat.name()) + " (pass --chat-template " + tmpl + ")");
    const bool has_system = r.get<uint8_t>("the system prompt") != 0;
    std::string system = r.str("the system prompt");

    std::vector<ChatMessage> messages(r.count("messages", 1u << 20));
    for (auto& msg : messages) {
        msg.role = r.str("a message role");
        msg.content = r.str("a message");
    }
    const int D = ctx_.config().n_embd;
    std::vector<std::shared_ptr<const EncodedImage>> images(r.count("images", 4096));
    for (auto& img : images) {
        auto e = std::make_shared<EncodedImage>();
        int32_t v[5];
        for (int32_t& x : v) x = r.get<int32_t>("an image");
        e->grid = ImageGrid{v[0], v[1], v[2]};
        e->width = v[3];
        e->height = v[4];
        if (v[0] < 0 || v[0] > 64 || v[1] < 0 || v[1] > 64 || v[2] < 1 || v[2] > 65536) r.damaged("bad image grid");
        const uint64_t n = r.get<uint64_t>("an image");
        if (n != uint64_t(e->grid.n_embeddings()) * uint64_t(D)) r.damaged("image embeddings of the wrong size");
        r.need(n * sizeof(float), "image embeddings");
        e->embd.resize(size_t(n));
        std::memcpy(e->embd.data(), buf.data() + r.at, size_t(n) * sizeof(float));
        r.at += size_t(n) * sizeof(float);
        img = std::move(e);
    }
    auto check_ids = [&](const std::vector<int32_t>& ids) {
        for (int32_t id : ids)
            if (id < 0 || id >= ctx_.config().n_vocab) r.damaged("token id " + std::to_string(id) + " outside the vocabulary");
    };
    std::vector<Call> calls(r.count("forward calls", uint32_t(std::max(ctx_.n_ctx(), 1))));
    int64_t positions = 0;
    for (Call& c : calls) {
        c.image = r.get<int32_t>("a forward call");
        c.embd_row = r.get<int32_t>("a forward call");
        c.n_rows = r.get<int32_t>("a forward call");
        c.tokens.resize(r.count("tokens", uint32_t(ctx_.n_ctx())));
        for (int32_t& id : c.tokens) id = r.get<int32_t>("tokens");
        check_ids(c.tokens);
        if (c.image >= 0) {
            if (c.image >= int(images.size()) || !c.tokens.empty() || c.n_rows <= 0 || c.embd_row < 0 ||
                int64_t(c.embd_row) + c.n_rows > images[size_t(c.image)]->grid.n_embeddings())
                r.damaged("an image call outside its image");
        } else if (c.tokens.empty() || c.image != -1) {
            r.damaged("an empty forward call");
        }
        positions += c.n_positions();
    }
    std::vector<int32_t> unfed(r.count("pending tokens", 16));
    for (int32_t& id : unfed) id = r.get<int32_t>("pending tokens");
    check_ids(unfed);
    const uint32_t turns = r.get<uint32_t>("the turn count");
    r.need(4, "the end marker");
    if (buf.compare(r.at, 4, "END!") != 0 || r.at + 4 != buf.size()) r.damaged("no end marker");
    if (positions + int64_t(unfed.size()) > ctx_.n_ctx())
        throw Error(ErrorKind::Usage, path + ": the conversation holds " + std::to_string(positions) +
                                          " positions, more than the context of " + std::to_string(ctx_.n_ctx()) +
                                          " (raise --ctx)");

    // Everything checked: replace the conversation and rebuild the KV cache.
    reset();
    opt_.system = has_system ? std::optional<std::string>(std::move(system)) : std::nullopt;
    images_ = std::move(images);
    messages_ = std::move(messages);
    for (const Call& c : calls) forward(c, nullptr);
    unfed_ = std::move(unfed);
    turns_ = int(turns);
}

}  // namespace glimpse
