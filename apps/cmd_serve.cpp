// `glimpse serve [-m MODEL] [--host 127.0.0.1] [--port 8080]`: an OpenAI-compatible HTTP API.
//
//   GET  /health                 {"status": "ok", ...} (no API key needed)
//   GET  /v1/models              the one loaded model
//   POST /v1/chat/completions    messages with text and image_url parts; stream (SSE),
//                                max_tokens, temperature, top_p, seed, stop, logprobs, ...
//
// The request side (parsing, image sources, response JSON) is apps/serve_api.h, the model
// side (queue, worker, image cache) apps/serve_engine.h. HTTP threads (cpp-httplib's pool)
// parse and decode; one worker owns the model. Every failure a client can cause is an
// OpenAI error object with its status (400, 401, 404, 413, 503), never a crash. Ctrl-C or
// SIGTERM stops accepting, answers the requests already received (streams are cut) and
// exits 0.
#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/default_model.h"
#include "apps/device_option.h"
#include "apps/serve_api.h"
#include "apps/serve_engine.h"
#include "core/error.h"

namespace glimpse::app {

namespace {

using namespace serve;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ServeArgs {
    EngineOptions engine;
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string api_key, api_key_file;
    MediaPolicy media;
    int max_body_mb = 32;
    int http_threads = 0;  // 0: max_queue + 16 (the queue can fill, and /health still answers)
    int decode_slots = 4;
    bool verbose = false;
    DeviceArgs device;
};

void send_json(httplib::Response& res, int status, const json& j) {
    res.status = status;
    res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status(), error_json(e)); }

// Constant-time comparison of the bearer token.
bool same_secret(const std::string& a, const std::string& b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i] ^ (i < b.size() ? b[i] : 0));
    return diff == 0;
}

std::string read_key_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw input_error(path, "cannot read the API key file");
    std::string key;
    std::getline(f, key);
    while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (key.empty()) throw input_error(path, "the API key file's first line is empty");
    return key;
}

class Server {
public:
    Server(const ServeArgs& a, Engine& engine, std::string api_key)
        : a_(a), engine_(engine), api_key_(std::move(api_key)), decode_slots_(std::max(1, a.decode_slots)) {}

    bool needs_key() const { return !api_key_.empty(); }

    void install(httplib::Server& svr) {
        svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            return authorize(req, res) ? httplib::Server::HandlerResponse::Unhandled
                                       : httplib::Server::HandlerResponse::Handled;
        });
        svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) { fill_error(req, res); });
        svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what += std::string(": ") + e.what();
            } catch (...) {
            }
            send_error(res, ApiError(500, what));
        });
        if (a_.verbose)
            svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
                std::fprintf(stderr, "serve: %s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
            });
        svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) { health(res); });
        svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
            send_json(res, 200, {{"object", "list"}, {"data", {model_json()}}});
        });
        svr.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
            if (req.matches[1] != engine_.model_id())
                return send_error(res, ApiError(404, "the model '" + std::string(req.matches[1]) + "' does not exist; this "
                                                     "server has '" + engine_.model_id() + "'", "model", "model_not_found"));
            send_json(res, 200, model_json());
        });
        svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
            try {
                chat(req, res);
            } catch (const ApiError& e) {
                send_error(res, e);
            }
        });
    }

private:
    bool authorize(const httplib::Request& req, httplib::Response& res) const {
        if (api_key_.empty() || req.path.rfind("/v1/", 0) != 0) return true;
        const std::string auth = req.get_header_value("Authorization");
        if (auth.empty()) {
            send_error(res, ApiError(401, "missing API key: send the header 'Authorization: Bearer KEY'", "",
                                     "invalid_api_key"));
            return false;
        }
        if (auth.rfind("Bearer ", 0) != 0 || !same_secret(auth.substr(7), api_key_)) {
            send_error(res, ApiError(401, "incorrect API key", "", "invalid_api_key"));
            return false;
        }
        return true;
    }

    // Errors httplib produces itself (no route, body over the limit, unreadable request).
    void fill_error(const httplib::Request& req, httplib::Response& res) const {
        if (!res.body.empty()) return;
        if (res.status == 413)
            return send_error(res, ApiError(413, "the request body is larger than the " + std::to_string(a_.max_body_mb) +
                                                     " MiB limit (--max-body-mb)", "", "request_too_large"));
        if (res.status == 404)
            return send_error(res, ApiError(404, "no such endpoint: " + req.method + " " + req.path, "", "not_found"));
        const int status = res.status;
        send_error(res, ApiError(status, "HTTP " + std::to_string(status) + " for " + req.method + " " + req.path));
    }

    json model_json() const {
        return {{"id", engine_.model_id()}, {"object", "model"}, {"created", engine_.created()}, {"owned_by", "glimpse"}};
    }

    void health(httplib::Response& res) const {
        const bool ok = engine_.worker_alive();
        send_json(res, ok ? 200 : 503,
                  {{"status", ok ? "ok" : "error"},
                   {"model", engine_.model_id()},
                   {"device", engine_.device()},
                   {"queued", engine_.queued()},
                   {"completed", engine_.completed()}});
    }

    // Image bytes → RGB on this HTTP thread, at most decode_slots at a time (a 100-Mpx
    // image is 300 MB of pixels).
    std::vector<RequestImage> load_images(const ChatRequest& r) {
        std::vector<RequestImage> out;
        for (size_t i = 0; i < r.image_urls.size(); ++i) {
            const std::string& param = r.image_params[i];
            const std::vector<uint8_t> bytes = load_image_url(r.image_urls[i], a_.media, param);
            RequestImage img;
            img.hash = content_hash(bytes.data(), bytes.size());
            decode_slots_.acquire();
            try {
                img.rgb = decode_image(bytes.data(), bytes.size(), param);
            } catch (const Error& e) {
                decode_slots_.release();
                throw ApiError(400, e.what(), param, "invalid_image");
            } catch (...) {
                decode_slots_.release();
                throw;
            }
            decode_slots_.release();
            out.push_back(std::move(img));
        }
        return out;
    }

    void chat(const httplib::Request& req, httplib::Response& res) {
        const auto t0 = Clock::now();
        ChatRequest r = parse_chat_request(req.body, engine_.prompt_style());
        if (r.model && *r.model != engine_.model_id())
            throw ApiError(404, "the model '" + *r.model + "' does not exist; this server has '" + engine_.model_id() + "'",
                           "model", "model_not_found");
        std::optional<JsonSchema> schema = compile_response_format(r);
        std::vector<RequestImage> images = load_images(r);
        auto job = std::make_shared<Job>(std::move(r), std::move(images), std::move(schema));
        engine_.submit(job);

        JobEvent first = job->pop();
        if (first.kind == JobEvent::Kind::Failed) throw *first.error;
        const std::string id = completion_id();
        const int64_t created = int64_t(std::time(nullptr));
        if (!job->request.stream) return answer_whole(*job, id, created, res, t0);

        res.set_header("Cache-Control", "no-cache");
        res.set_header("X-Accel-Buffering", "no");
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, job, id, created, sent_role = false](size_t, httplib::DataSink& sink) mutable {
                return stream_step(*job, id, created, sent_role, sink);
            },
            [job](bool success) {
                if (!success) job->cancel();
            });
    }

    void answer_whole(Job& job, const std::string& id, int64_t created, httplib::Response& res, Clock::time_point t0) {
        std::string text;
        std::vector<TokenLogprob> logprobs;
        for (;;) {
            JobEvent ev = job.pop();
            if (ev.kind == JobEvent::Kind::Failed) throw *ev.error;
            text += ev.text;
            for (auto& t : ev.logprobs) logprobs.push_back(std::move(t));
            if (ev.kind != JobEvent::Kind::Done) continue;
            send_json(res, 200,
                      completion_json(id, created, engine_.model_id(), text, ev.finish_reason, ev.usage,
                                      job.request.logprobs ? &logprobs : nullptr));
            if (a_.verbose) log_done(ev, t0);
            return;
        }
    }

    // Writes the next SSE event(s); false ends the response (the client is gone).
    bool stream_step(Job& job, const std::string& id, int64_t created, bool& sent_role, httplib::DataSink& sink) {
        const std::string& model = engine_.model_id();
        const bool lp = job.request.logprobs;
        if (!sent_role) {
            sent_role = true;
            return write(sink, sse_event(chunk_json(id, created, model, {{"role", "assistant"}, {"content", ""}}, "", nullptr)));
        }
        for (;;) {
            JobEvent ev = job.pop();
            if (ev.kind == JobEvent::Kind::Failed) {
                // Headers are gone already: the error travels as an event, then the stream ends.
                const bool ok = write(sink, sse_event(error_json(*ev.error))) && write(sink, "data: [DONE]\n\n");
                sink.done();
                return ok;
            }
            if (ev.kind == JobEvent::Kind::Delta) {
                if (ev.text.empty() && ev.logprobs.empty()) continue;
                const json delta = ev.text.empty() ? json::object() : json{{"content", ev.text}};
                return write(sink, sse_event(chunk_json(id, created, model, delta, "", lp ? &ev.logprobs : nullptr)));
            }
            // Done: the held-back text, the finish reason, the usage if asked, [DONE].
            std::string out;
            if (!ev.text.empty())
                out += sse_event(chunk_json(id, created, model, {{"content", ev.text}}, "", lp ? &ev.logprobs : nullptr));
            out += sse_event(chunk_json(id, created, model, json::object(), ev.finish_reason, nullptr));
            if (job.request.include_usage) out += sse_event(usage_chunk_json(id, created, model, ev.usage));
            out += "data: [DONE]\n\n";
            const bool ok = write(sink, out);
            sink.done();
            return ok;
        }
    }

    static bool write(httplib::DataSink& sink, const std::string& s) { return sink.write(s.data(), s.size()); }

    void log_done(const JobEvent& ev, Clock::time_point t0) const {
        std::fprintf(stderr, "serve: %d prompt + %d generated tokens; prefill %.1f ms, generate %.1f ms, total %.1f ms\n",
                     ev.usage.prompt_tokens, ev.usage.completion_tokens, ev.prefill_ms, ev.generate_ms,
                     std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }

    const ServeArgs& a_;
    Engine& engine_;
    const std::string api_key_;  // "" = no key needed
    std::counting_semaphore<> decode_slots_;
};

// Debian's libcpp-httplib is built with a listen backlog of 5: a burst of connections beyond
// that overflows the kernel's accept queue and clients see resets. listen(2) again on the
// bound socket raises the backlog (Linux takes the new value, capped by net.core.somaxconn).
class HttpServer : public httplib::Server {
public:
    bool raise_backlog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }
};

int run_serve(ServeArgs& a) {
    use_default_model_if_unset(a.engine.model, a.engine.mmproj);
    if (!a.media.allowed_local_dir.empty() && !std::filesystem::is_directory(a.media.allowed_local_dir))
        throw input_error(a.media.allowed_local_dir, "--allowed-local-media must be a folder");
    a.media.max_image_bytes = size_t(a.max_body_mb) << 20;

    // SIGINT/SIGTERM are taken by one thread (sigwait) that stops the server; every other
    // thread, started after this, inherits the blocked mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    std::string api_key = a.api_key;
    if (api_key.empty() && !a.api_key_file.empty()) api_key = read_key_file(a.api_key_file);
    a.engine.device = a.device.spec;
    a.engine.verbose = a.verbose;
    Engine engine(a.engine);
    Server server(a, engine, api_key);

    HttpServer svr;
    const size_t n_http = size_t(a.http_threads > 0 ? a.http_threads : a.engine.max_queue + 16);
    svr.new_task_queue = [n_http] { return new httplib::ThreadPool(n_http); };
    svr.set_payload_max_length(size_t(a.max_body_mb) << 20);
    svr.set_read_timeout(30);
    svr.set_write_timeout(30);
    server.install(svr);

    int port = a.port;
    if (port == 0) port = svr.bind_to_any_port(a.host);
    else if (!svr.bind_to_port(a.host, port)) port = -1;
    if (port <= 0)
        throw Error(ErrorKind::Usage, "cannot listen on " + a.host + ":" + std::to_string(a.port) +
                                          " (in use, or not an address of this machine)");
    if (!svr.raise_backlog(4096)) std::fprintf(stderr, "glimpse serve: cannot raise the listen backlog (bursts may be refused)\n");
    std::printf("glimpse serve: listening on http://%s:%d (model '%s' on %s, context %d%s)\n", a.host.c_str(), port,
                engine.model_id().c_str(), engine.device().c_str(), engine.n_ctx(),
                server.needs_key() ? ", API key required" : "");
    std::fflush(stdout);

    std::atomic<bool> listen_returned{false};
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        // A signal that came before listen started must still stop it.
        while (!svr.is_running() && !listen_returned) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        svr.stop();
    });
    const bool listened = svr.listen_after_bind();
    listen_returned = true;
    pthread_kill(stopper.native_handle(), SIGTERM);  // if it returned for another reason
    stopper.join();
    engine.stop();
    if (!listened) throw Error(ErrorKind::Usage, "the server on " + a.host + ":" + std::to_string(port) + " failed");
    std::fprintf(stderr, "glimpse serve: stopped after %llu answers\n", static_cast<unsigned long long>(engine.completed()));
    return 0;
}

}  // namespace

Command add_serve(CLI::App& app) {
    auto a = std::make_shared<ServeArgs>();
    auto* sub = app.add_subcommand("serve", "An OpenAI-compatible HTTP API: /v1/chat/completions with images");
    sub->footer(
        "Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health.\n"
        "Images: image_url parts with data: URIs (base64); file:// URLs and paths only under\n"
        "--allowed-local-media; http(s) URLs only with --allow-remote-media.\n"
        "Example: glimpse serve --port 8080, then\n"
        "  curl localhost:8080/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'");
    sub->add_option("-m,--model", a->engine.model, "model file or folder (default: the embedded tiny SmolVLM)");
    sub->add_option("--mmproj", a->engine.mmproj, "the vision tower + projector GGUF (default: beside the model)");
    sub->add_option("--chat-template", a->engine.chat_template, "smolvlm, llava, vicuna, chatml (default: the model's own)");
    sub->add_option("--alias", a->engine.model_id, "the model id /v1/models reports (default: the model file's name)");
    sub->add_option("--host", a->host, "address to listen on (default 127.0.0.1: this machine only)");
    sub->add_option("--port", a->port, "port (default 8080; 0 = any free port, printed at start)")->check(CLI::Range(0, 65535));
    sub->add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' on /v1/ endpoints");
    sub->add_option("--api-key-file", a->api_key_file, "the same, the key read from a file's first line");
    sub->add_option("--allowed-local-media", a->media.allowed_local_dir,
                    "accept file:// URLs and paths inside this folder (default: refused)");
    sub->add_flag("--allow-remote-media", a->media.allow_remote, "fetch http(s) image URLs (default: refused)");
    sub->add_option("--max-body-mb", a->max_body_mb, "largest request body, and image, in MiB (default 32)")
        ->check(CLI::Range(1, 4096));
    sub->add_option("--max-queue", a->engine.max_queue, "requests waiting for the model beyond this get 503 (default 128)")
        ->check(CLI::Range(1, 1 << 20));
    sub->add_option("--http-threads", a->http_threads, "connections served at once (default: --max-queue + 16)")
        ->check(CLI::Range(1, 4096));
    sub->add_option("-n,--max-tokens", a->engine.default_max_tokens,
                    "tokens to generate when a request gives no max_tokens (default 256)")
        ->check(CLI::Range(1, 1 << 24));
    sub->add_option("--image-max-tiles", a->engine.max_tiles, "SmolVLM: at most N tiles per image (0 = the model's rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("--image-cache", a->engine.image_cache, "encoded images kept for reuse (default 64)")
        ->check(CLI::Range(0, 1 << 20));
    sub->add_option("-t,--threads", a->engine.threads, "compute threads (default: one per hardware thread)")
        ->check(CLI::Range(1, 1024));
    sub->add_option("--ctx", a->engine.ctx, "context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(1, 1 << 24));
    sub->add_flag("-v,--verbose", a->verbose, "log every request and its timings on stderr");
    add_device_option(sub, a->device);
    return {sub, [a] { return run_serve(*a); }};
}

}  // namespace glimpse::app
