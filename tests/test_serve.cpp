// `glimpse serve`: the request parser, image sources and response JSON on their own, then the
// real binary started on a free port of 127.0.0.1 and spoken to over HTTP with httplib's
// client: health, models, a plain answer equal to what `describe` prints, streaming that
// reassembles to the same text, images as data: URIs, local paths and http URLs under their
// policies, logprobs, json_schema, every kind of bad request as an OpenAI error object, an
// API key, and 100 concurrent requests with the server healthy afterwards.
#include <catch2/catch.hpp>

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tests/test_vk_helpers.h"

// The apps are not part of the glimpse library the tests link, so the request side of
// `serve` is compiled into this test directly (as test_caption_cli does with its inputs).
#include "apps/serve_api.cpp"

using namespace glimpse;
using namespace glimpse::app::serve;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kExamples = fs::path(GLIMPSE_SOURCE_DIR) / "examples";

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string data_uri(const fs::path& png) {
    const std::string bytes = slurp(png);
    return "data:image/png;base64," + base64_encode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

json user_with_image(const std::string& url, const std::string& text) {
    return json::array({{{"role", "user"},
                         {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                                                  {{"type", "text"}, {"text", text}}})}}});
}

// A `glimpse serve` process on a free port of 127.0.0.1; SIGTERM and reaped on destruction.
class ServeProcess {
public:
    explicit ServeProcess(const std::string& args) {
        const std::string cmd = "exec " + test::shell_quote(GLIMPSE_BINARY) + " serve --port 0 -t 2 " + args + " >" +
                                test::shell_quote((tmp_ / "out").string()) + " 2>" +
                                test::shell_quote((tmp_ / "err").string()) + " </dev/null";
        pid_ = fork();
        if (pid_ == 0) {
            execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string out = slurp(tmp_ / "out");
            const size_t at = out.find("127.0.0.1:");
            if (at != std::string::npos && out.find('\n', at) != std::string::npos) {
                port_ = std::stoi(out.substr(at + 10));
                return;
            }
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                FAIL("glimpse serve exited at start: " + slurp(tmp_ / "err"));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        FAIL("glimpse serve did not print its port in 120 s: " + slurp(tmp_ / "err"));
    }
    ~ServeProcess() { stop(); }

    // SIGTERM; the exit code (128 + signal when killed by one).
    int stop() {
        if (pid_ <= 0) return exit_code_;
        kill(pid_, SIGTERM);
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
    }
    int port() const { return port_; }
    std::string err() const { return slurp(tmp_ / "err"); }

    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port_);
        c.set_read_timeout(300);
        c.set_write_timeout(60);
        return c;
    }
    httplib::Result post(const json& body, const httplib::Headers& h = {}) const {
        return client().Post("/v1/chat/completions", h, body.dump(), "application/json");
    }

private:
    test::TempDir tmp_;
    pid_t pid_ = -1;
    int port_ = 0;
    int exit_code_ = -1;
};

// {"error": {"message", "type", "param", "code"}} with a non-empty message.
void check_error_object(const httplib::Result& r, int status, const std::string& code = "") {
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == status);
    CHECK(r->get_header_value("Content-Type") == "application/json");
    const json j = json::parse(r->body);
    REQUIRE(j.contains("error"));
    const json& e = j["error"];
    CHECK(e["message"].is_string());
    CHECK(!e["message"].get<std::string>().empty());
    CHECK(e["type"].is_string());
    CHECK(e.contains("param"));
    CHECK(e.contains("code"));
    if (!code.empty()) CHECK(e["code"] == code);
}

// The content of a whole (non-stream) answer; checks its shape.
std::string answer_text(const httplib::Result& r, std::string* finish = nullptr) {
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    const json j = json::parse(r->body);
    CHECK(j["object"] == "chat.completion");
    CHECK(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
    REQUIRE(j["choices"].size() == 1);
    const json& c = j["choices"][0];
    CHECK(c["message"]["role"] == "assistant");
    CHECK(j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
    if (finish) *finish = c["finish_reason"].get<std::string>();
    return c["message"]["content"].get<std::string>();
}

// "data: X\n\n" events of an SSE body, in order.
std::vector<std::string> sse_data(const std::string& body) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at < body.size()) {
        const size_t end = body.find("\n\n", at);
        REQUIRE(end != std::string::npos);  // every event is terminated
        const std::string ev = body.substr(at, end - at);
        REQUIRE(ev.rfind("data: ", 0) == 0);
        out.push_back(ev.substr(6));
        at = end + 2;
    }
    return out;
}

}  // namespace

// ---- the request side, without a server ------------------------------------------------------

TEST_CASE("serve API: requests parse into messages with image markers, sampling and options", "[serve]") {
    PromptStyle style;  // "<image>", SmolVLM
    const json body = {{"model", "m"},
                       {"messages",
                        {{{"role", "system"}, {"content", "Be brief."}},
                         {{"role", "user"},
                          {"content",
                           {{{"type", "text"}, {"text", "Compare "}},
                            {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,AAAA"}}}},
                            {{"type", "text"}, {"text", " and "}},
                            {{"type", "image_url"}, {"image_url", {{"url", "file:///x.png"}, {"detail", "low"}}}}}}},
                         {{"role", "assistant"}, {"content", "Two circles."}},
                         {{"role", "user"}, {"content", "Colours?"}}}},
                       {"temperature", 0.5},
                       {"top_p", 0.9},
                       {"seed", 42},
                       {"max_tokens", 7},
                       {"stop", {"\n", "."}},
                       {"logprobs", true},
                       {"top_logprobs", 3},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}},
                       {"user", "ignored"},
                       {"frequency_penalty", 0}};
    const ChatRequest r = parse_chat_request(body.dump(), style);
    REQUIRE(r.messages.size() == 4);
    CHECK(r.has_system);
    CHECK(r.messages[1].content == "Compare <image> and <image>");
    CHECK(r.messages[2].role == "assistant");
    CHECK(r.image_urls == std::vector<std::string>{"data:image/png;base64,AAAA", "file:///x.png"});
    CHECK(r.image_params[1] == "messages[1].content[3].image_url.url");
    CHECK(r.model == "m");
    CHECK(r.sampling.temperature == 0.5f);
    CHECK(r.sampling.top_p == 0.9f);
    CHECK(r.sampling.seed == 42);
    CHECK(r.seed_given);
    CHECK(r.max_tokens == 7);
    CHECK(r.stop == std::vector<std::string>{"\n", "."});
    CHECK(r.logprobs);
    CHECK(r.top_logprobs == 3);
    CHECK(r.stream);
    CHECK(r.include_usage);
    CHECK(r.response_format == "text");

    // Defaults: OpenAI's temperature 1, no seed, the server's max_tokens; "developer" is system.
    const ChatRequest d = parse_chat_request(
        R"({"messages":[{"role":"developer","content":"x"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"a.png"}}]}]})",
        PromptStyle{"<image>", true});
    CHECK(d.sampling.temperature == 1.0f);
    CHECK(!d.seed_given);
    CHECK(!d.max_tokens);
    CHECK(d.messages[0].role == "system");
    CHECK(d.messages[1].content == "<image>\n");  // LLaVA writes a newline after the image

    const ChatRequest s = parse_chat_request(
        R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}})",
        style);
    CHECK(s.response_format == "json_schema");
    CHECK(json::parse(s.schema_text) == json{{"type", "object"}});
    // The schema's key order is kept (it is the order the answer writes properties in).
    const ChatRequest o = parse_chat_request(
        R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"string"}}}}}})",
        style);
    CHECK(o.schema_text == R"({"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"string"}}})");
}

TEST_CASE("serve API: every malformed request is a 400 naming the field", "[serve]") {
    const PromptStyle style;
    auto param_of = [&](const std::string& body) -> std::string {
        try {
            parse_chat_request(body, style);
        } catch (const ApiError& e) {
            CHECK(e.status() == 400);
            CHECK(e.type() == "invalid_request_error");
            return e.param().empty() ? "(none)" : e.param();
        }
        FAIL("accepted: " << body);
        return "";
    };
    const std::string user = R"("messages":[{"role":"user","content":"hi"}])";
    CHECK(param_of("{bad") == "(none)");
    CHECK(param_of("") == "(none)");
    CHECK(param_of("[1,2]") == "(none)");
    CHECK(param_of("{}") == "messages");
    CHECK(param_of(R"({"messages":[]})") == "messages");
    CHECK(param_of(R"({"messages":"hi"})") == "messages");
    CHECK(param_of(R"({"messages":[{"content":"hi"}]})") == "messages[0].role");
    CHECK(param_of(R"({"messages":[{"role":"tool","content":"hi"}]})") == "messages[0].role");
    CHECK(param_of(R"({"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"},{"role":"user","content":"c"}]})") ==
          "messages[1].role");
    CHECK(param_of(R"({"messages":[{"role":"user","content":7}]})") == "messages[0].content");
    CHECK(param_of(R"({"messages":[{"role":"user","content":[{"type":"audio"}]}]})") == "messages[0].content[0].type");
    CHECK(param_of(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})") ==
          "messages[0].content[0].image_url");
    CHECK(param_of(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":5}}]}]})") ==
          "messages[0].content[0].image_url.url");
    CHECK(param_of(R"({"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"a"}}]},{"role":"user","content":"x"}]})") ==
          "messages[0].content[0]");
    CHECK(param_of(R"({"messages":[{"role":"user","content":"look: <image>"}]})") == "messages[0].content");
    CHECK(param_of(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]})") == "messages");
    CHECK(param_of("{" + user + R"(,"model":3})") == "model");
    CHECK(param_of("{" + user + R"(,"temperature":3})") == "temperature");
    CHECK(param_of("{" + user + R"(,"temperature":"hot"})") == "temperature");
    CHECK(param_of("{" + user + R"(,"top_p":0})") == "top_p");
    CHECK(param_of("{" + user + R"(,"max_tokens":0})") == "max_tokens");
    CHECK(param_of("{" + user + R"(,"max_tokens":1.5})") == "max_tokens");
    CHECK(param_of("{" + user + R"(,"n":2})") == "n");
    CHECK(param_of("{" + user + R"(,"stop":["a","b","c","d","e"]})") == "stop");
    CHECK(param_of("{" + user + R"(,"stop":[1]})") == "stop[0]");
    CHECK(param_of("{" + user + R"(,"stream":"yes"})") == "stream");
    CHECK(param_of("{" + user + R"(,"top_logprobs":2})") == "top_logprobs");
    CHECK(param_of("{" + user + R"(,"logprobs":true,"top_logprobs":21})") == "top_logprobs");
    CHECK(param_of("{" + user + R"(,"frequency_penalty":0.5})") == "frequency_penalty");
    CHECK(param_of("{" + user + R"(,"stream_options":{"include_usage":true}})") == "stream_options");
    CHECK(param_of("{" + user + R"(,"response_format":{"type":"xml"}})") == "response_format.type");
    CHECK(param_of("{" + user + R"(,"response_format":{"type":"json_schema"}})") == "response_format.json_schema");
    // Deeply nested JSON is an error, not a stack overflow.
    CHECK(param_of(std::string(100000, '[') + std::string(100000, ']')) == "(none)");
}

TEST_CASE("serve API: base64 and image sources under the media policy", "[serve]") {
    for (size_t n = 0; n < 40; ++n) {
        std::vector<uint8_t> bytes(n);
        for (size_t i = 0; i < n; ++i) bytes[i] = uint8_t(i * 37 + 11);
        const std::string b64 = base64_encode(bytes.data(), n);
        CHECK(base64_decode(b64) == bytes);
        std::string unpadded = b64;
        while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
        CHECK(base64_decode(unpadded) == bytes);
    }
    CHECK(base64_decode("aGVs\nbG8=") == std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'});
    for (const char* bad : {"a", "aGVsbG8=x", "aGV*", "aGVsbG8===", "a==="}) CHECK(!base64_decode(bad));

    test::TempDir tmp;
    fs::create_directories(tmp / "media" / "sub");
    test::write_file(tmp / "media" / "sub" / "a.png", std::string("PNGBYTES"));
    test::write_file(tmp / "secret.png", std::string("SECRET"));
    fs::create_symlink(tmp / "secret.png", tmp / "media" / "link.png");
    MediaPolicy open_dir;
    open_dir.allowed_local_dir = (tmp / "media").string();
    auto code_of = [](const std::string& url, const MediaPolicy& p) -> std::string {
        try {
            load_image_url(url, p, "u");
        } catch (const ApiError& e) {
            CHECK(e.param() == "u");
            return std::to_string(e.status()) + " " + e.code();
        }
        return "ok";
    };
    const std::vector<uint8_t> png = {'P', 'N', 'G', 'B', 'Y', 'T', 'E', 'S'};
    CHECK(load_image_url("data:image/png;base64,UE5HQllURVM=", MediaPolicy{}, "u") == png);
    CHECK(load_image_url("DATA:image/png;BASE64,UE5HQllURVM", MediaPolicy{}, "u") == png);
    CHECK(load_image_url("file://" + (tmp / "media" / "sub" / "a.png").string(), open_dir, "u") == png);
    CHECK(load_image_url("sub/a.png", open_dir, "u") == png);  // relative to the allowed folder
    CHECK(load_image_url("file://" + (tmp / "media" / "sub" / "%61.png").string(), open_dir, "u") == png);  // %61 = a
    CHECK(code_of("data:image/png;base64,@@@@", MediaPolicy{}) == "400 invalid_base64");
    CHECK(code_of("data:image/png,rawbytes", MediaPolicy{}) == "400 ");
    CHECK(code_of("data:image/png;base64,", MediaPolicy{}) == "400 invalid_image");
    CHECK(code_of("data:image/png;base64", MediaPolicy{}) == "400 ");
    CHECK(code_of("http://127.0.0.1:1/x.png", MediaPolicy{}) == "400 remote_media_refused");
    CHECK(code_of("https://example.com/x.png", MediaPolicy{}) == "400 remote_media_refused");
    CHECK(code_of("ftp://example.com/x.png", MediaPolicy{}) == "400 ");
    CHECK(code_of((tmp / "media" / "sub" / "a.png").string(), MediaPolicy{}) == "400 local_media_refused");
    CHECK(code_of((tmp / "secret.png").string(), open_dir) == "400 local_media_refused");
    CHECK(code_of((tmp / "media" / ".." / "secret.png").string(), open_dir) == "400 local_media_refused");
    CHECK(code_of("file://" + (tmp / "media" / "link.png").string(), open_dir) == "400 local_media_refused");
    CHECK(code_of("../secret.png", open_dir) == "400 local_media_refused");
    CHECK(code_of("sub/missing.png", open_dir) == "400 invalid_image");
    CHECK(code_of("sub", open_dir) == "400 invalid_image");
    MediaPolicy small = open_dir;
    small.max_image_bytes = 4;
    CHECK(code_of("sub/a.png", small) == "413 image_too_large");
    CHECK(code_of("data:image/png;base64,UE5HQllURVNQTkdCWVRFUw==", small) == "413 image_too_large");
}

TEST_CASE("serve API: response objects have OpenAI's shape", "[serve]") {
    const json e = error_json(ApiError(404, "no such model", "model", "model_not_found"));
    CHECK(e == json{{"error", {{"message", "no such model"}, {"type", "invalid_request_error"}, {"param", "model"}, {"code", "model_not_found"}}}});
    CHECK(error_json(ApiError(401, "x"))["error"]["type"] == "authentication_error");
    CHECK(error_json(ApiError(503, "x"))["error"]["param"].is_null());
    CHECK(error_json(ApiError(500, "x"))["error"]["type"] == "server_error");

    const std::vector<TokenLogprob> lp = {{" Hi", -0.25f, {{" Hi", -0.25f}, {" Yo", -1.5f}}}};
    const json c = completion_json("chatcmpl-1", 5, "m", " Hi", "stop", Usage{10, 1}, &lp);
    CHECK(c["choices"][0]["message"]["content"] == " Hi");
    CHECK(c["usage"] == json{{"prompt_tokens", 10}, {"completion_tokens", 1}, {"total_tokens", 11}});
    const json& entry = c["choices"][0]["logprobs"]["content"][0];
    CHECK(entry["token"] == " Hi");
    CHECK(entry["bytes"] == json{32, 72, 105});
    CHECK(entry["top_logprobs"][1]["token"] == " Yo");
    CHECK(entry["top_logprobs"][1]["logprob"].get<double>() == Approx(-1.5));
    const json k = chunk_json("chatcmpl-1", 5, "m", {{"content", "x"}}, "", nullptr);
    CHECK(k["object"] == "chat.completion.chunk");
    CHECK(k["choices"][0]["finish_reason"].is_null());
    CHECK(k["choices"][0]["delta"]["content"] == "x");
    // Invalid UTF-8 (a token that ends inside a character) still gives valid JSON text.
    CHECK(json::parse(sse_event(json{{"t", std::string("a\xe4\xb8")}}).substr(6))["t"] == "a\xef\xbf\xbd");
    CHECK(completion_id() != completion_id());
}

// ---- the real server ---------------------------------------------------------------------------

TEST_CASE("serve: health, models, and a greedy answer equal to describe's, plain and streamed", "[serve][cli]") {
    ServeProcess server("");
    auto cli = server.client();
    auto h = cli.Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(json::parse(h->body)["status"] == "ok");
    auto m = cli.Get("/v1/models");
    REQUIRE(m);
    REQUIRE(m->status == 200);
    const json models = json::parse(m->body);
    CHECK(models["object"] == "list");
    REQUIRE(models["data"].size() == 1);
    const std::string id = models["data"][0]["id"];
    CHECK(models["data"][0]["object"] == "model");
    auto one = cli.Get("/v1/models/" + id);
    REQUIRE(one);
    CHECK(one->status == 200);
    check_error_object(cli.Get("/v1/models/gpt-4o"), 404, "model_not_found");
    check_error_object(cli.Get("/v1/nothing"), 404);

    for (const char* scene : {"scene_1.png", "scene_3.png"}) {
        const fs::path img = kExamples / scene;
        for (const char* prompt : {"Describe this image.", "How many shapes are there?"}) {
            const auto d = test::run_glimpse("describe " + test::shell_quote(img.string()) + " -p " +
                                             test::shell_quote(prompt) + " -n 40 -t 2");
            REQUIRE(d.exit_code == 0);
            const json body = {{"model", id}, {"messages", user_with_image(data_uri(img), prompt)}, {"temperature", 0},
                               {"max_tokens", 40}};
            std::string finish;
            const std::string text = answer_text(server.post(body), &finish);
            CHECK(text + "\n" == d.out);
            CHECK(finish == "stop");

            // Streamed: a role chunk, content chunks that join to the same text, a finish
            // chunk, the usage chunk, [DONE].
            json sbody = body;
            sbody.erase("model");  // absent: the loaded model
            sbody["stream"] = true;
            sbody["stream_options"] = {{"include_usage", true}};
            auto r = server.post(sbody);
            REQUIRE(r);
            REQUIRE(r->status == 200);
            CHECK(r->get_header_value("Content-Type").rfind("text/event-stream", 0) == 0);
            const auto events = sse_data(r->body);
            REQUIRE(events.size() >= 4);
            CHECK(events.back() == "[DONE]");
            std::string joined;
            std::string stream_finish;
            for (size_t i = 0; i + 1 < events.size(); ++i) {
                const json c = json::parse(events[i]);
                CHECK(c["object"] == "chat.completion.chunk");
                CHECK(c["id"] == json::parse(events[0])["id"]);
                if (i + 2 == events.size()) {  // usage
                    CHECK(c["choices"].empty());
                    CHECK(c["usage"]["completion_tokens"].get<int>() > 0);
                    continue;
                }
                const json& ch = c["choices"][0];
                if (i == 0) CHECK(ch["delta"]["role"] == "assistant");
                if (ch["delta"].contains("content")) joined += ch["delta"]["content"].get<std::string>();
                if (!ch["finish_reason"].is_null()) stream_finish = ch["finish_reason"];
            }
            CHECK(joined == text);
            CHECK(stream_finish == "stop");
        }
    }
    // A text-only question is answered too; max_tokens bounds it and says "length".
    std::string finish;
    const std::string t = answer_text(
        server.post({{"messages", {{{"role", "user"}, {"content", "Describe this image."}}}}, {"max_tokens", 3}, {"temperature", 0}}),
        &finish);
    CHECK(finish == "length");
    CHECK(server.stop() == 0);
    CHECK(server.err().find("stopped") != std::string::npos);
}

TEST_CASE("serve: --device vulkan answers as the CPU does, and /health names the device", "[serve][cli][vulkan]") {
    VK_OR_SKIP(ctx);
    const fs::path img = kExamples / "scene_2.png";
    const auto d = test::run_glimpse("describe " + test::shell_quote(img.string()) + " -n 40 -t 2 --device cpu");
    REQUIRE(d.exit_code == 0);
    ServeProcess server("--device vulkan -v");
    auto h = server.client().Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(json::parse(h->body)["device"].get<std::string>().find("vulkan device") != std::string::npos);
    const json body = {{"messages", user_with_image(data_uri(img), "Describe this image.")}, {"temperature", 0},
                       {"max_tokens", 40}};
    CHECK(answer_text(server.post(body)) + "\n" == d.out);
    CHECK(server.stop() == 0);
    const std::string err = server.err();
    CHECK(err.find("text tower on vulkan device") != std::string::npos);
    CHECK(err.find("vision tower + projector on vulkan device") != std::string::npos);
    // A device that does not exist: exit 4 and one line, before anything listens.
    const auto bad = test::run_glimpse("serve --port 0 --device vulkan:99");
    CHECK(bad.exit_code == 4);
    CHECK(bad.err.find("no device 99") != std::string::npos);
    CHECK(bad.out.empty());
}

TEST_CASE("serve: sampling with a seed repeats, stop strings cut, logprobs have OpenAI's shape", "[serve][cli]") {
    ServeProcess server("");
    const std::string url = data_uri(kExamples / "scene_2.png");
    const json base = {{"messages", user_with_image(url, "Describe this image.")}, {"max_tokens", 30}};
    json sampled = base;
    sampled["temperature"] = 1.5;
    sampled["seed"] = 1234;
    const std::string a = answer_text(server.post(sampled));
    CHECK(answer_text(server.post(sampled)) == a);

    json greedy = base;
    greedy["temperature"] = 0;
    const std::string full = answer_text(server.post(greedy));
    REQUIRE(full.size() > 6);
    const std::string cut_at = full.substr(full.size() / 2, 3);  // three characters from the middle
    json stopped = greedy;
    stopped["stop"] = cut_at;
    std::string finish;
    const std::string head = answer_text(server.post(stopped), &finish);
    CHECK(head == full.substr(0, full.find(cut_at)));
    CHECK(finish == "stop");

    json lp = greedy;
    lp["logprobs"] = true;
    lp["top_logprobs"] = 3;
    auto r = server.post(lp);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const json j = json::parse(r->body);
    const json& content = j["choices"][0]["logprobs"]["content"];
    REQUIRE(content.size() == size_t(j["usage"]["completion_tokens"].get<int>()));
    std::string joined;
    for (const json& t : content) {
        joined += t["token"].get<std::string>();
        REQUIRE(t["top_logprobs"].size() == 3);
        // Greedy: the chosen token is the most likely one, with the same logprob.
        CHECK(t["top_logprobs"][0]["token"] == t["token"]);
        CHECK(t["top_logprobs"][0]["logprob"].get<double>() == Approx(t["logprob"].get<double>()));
        double mass = 0;
        for (size_t k = 0; k < 3; ++k) {
            CHECK(t["top_logprobs"][k]["logprob"].get<double>() <= 0);
            if (k) CHECK(t["top_logprobs"][k]["logprob"] <= t["top_logprobs"][k - 1]["logprob"]);
            mass += std::exp(t["top_logprobs"][k]["logprob"].get<double>());
        }
        CHECK(mass <= 1.0 + 1e-5);
        CHECK(t["bytes"].size() == t["token"].get<std::string>().size());
    }
    CHECK(joined == full);
}

TEST_CASE("serve: response_format json_schema and json_object give JSON that fits", "[serve][cli]") {
    ServeProcess server("");
    const json schema = {{"type", "object"},
                         {"properties",
                          {{"shapes", {{"type", "integer"}}},
                           {"colour", {{"type", "string"}, {"enum", {"red", "green", "blue", "black"}}}}}},
                         {"required", {"shapes", "colour"}}};
    for (double temp : {0.0, 1.0}) {
        const json body = {{"messages", user_with_image(data_uri(kExamples / "scene_3.png"), "How many shapes are there?")},
                           {"temperature", temp},
                           {"seed", 7},
                           {"max_tokens", 60},
                           {"response_format",
                            {{"type", "json_schema"}, {"json_schema", {{"name", "scene"}, {"schema", schema}, {"strict", true}}}}}};
        std::string finish;
        const std::string text = answer_text(server.post(body), &finish);
        INFO(text);
        CHECK(finish == "stop");
        const json j = json::parse(text);
        CHECK(j["shapes"].is_number_integer());
        CHECK(json{"red", "green", "blue", "black"}.dump().find(j["colour"].dump()) != std::string::npos);
    }
    const json obj = {{"messages", {{{"role", "user"}, {"content", "Describe this image."}}}},
                      {"max_tokens", 80},
                      {"temperature", 0},
                      {"response_format", {{"type", "json_object"}}}};
    std::string finish;
    const std::string text = answer_text(server.post(obj), &finish);
    INFO(text);
    if (finish == "stop") CHECK(json::parse(text).is_object());
    else CHECK(text.front() == '{');  // cut by max_tokens inside the object
    json bad = obj;
    bad["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"schema", {{"type", "object"}, {"patternProperties", json::object()}}}}}};
    check_error_object(server.post(bad), 400, "invalid_json_schema");
}

TEST_CASE("serve: bad requests are OpenAI error objects with their status, and the server lives on", "[serve][cli]") {
    test::TempDir tmp;
    fs::create_directories(tmp / "media");
    fs::copy_file(kExamples / "scene_4.png", tmp / "media" / "scene.png");
    fs::copy_file(kExamples / "scene_5.png", tmp / "outside.png");
    ServeProcess server("--max-body-mb 1 --allowed-local-media " + test::shell_quote((tmp / "media").string()));
    auto cli = server.client();
    auto post_raw = [&](const std::string& body) { return cli.Post("/v1/chat/completions", body, "application/json"); };
    check_error_object(post_raw("{\"messages\": [ {\"role\": \"user\""), 400, "invalid_json");
    check_error_object(post_raw(""), 400, "invalid_json");
    check_error_object(post_raw(std::string(2 << 20, ' ')), 413, "request_too_large");
    check_error_object(server.post({{"messages", user_with_image("data:image/png;base64,%%%%", "hi")}}), 400, "invalid_base64");
    const std::string junk = "not an image at all";
    check_error_object(server.post({{"messages", user_with_image("data:image/png;base64," +
                                                                      base64_encode(reinterpret_cast<const uint8_t*>(junk.data()), junk.size()),
                                                                  "hi")}}),
                       400, "invalid_image");
    std::string png = slurp(kExamples / "scene_1.png");
    png.resize(png.size() / 2);  // truncated
    check_error_object(server.post({{"messages", user_with_image("data:image/png;base64," +
                                                                      base64_encode(reinterpret_cast<const uint8_t*>(png.data()), png.size()),
                                                                  "hi")}}),
                       400, "invalid_image");
    check_error_object(server.post({{"model", "gpt-4o"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}), 404,
                       "model_not_found");
    check_error_object(server.post({{"messages", user_with_image("https://example.com/cat.png", "hi")}}), 400,
                       "remote_media_refused");
    check_error_object(server.post({{"messages", user_with_image((tmp / "outside.png").string(), "hi")}}), 400,
                       "local_media_refused");
    check_error_object(server.post({{"messages", user_with_image((tmp / "media" / ".." / "outside.png").string(), "hi")}}), 400,
                       "local_media_refused");
    check_error_object(server.post({{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"temperature", -1}}), 400);
    // A prompt longer than the context (256 positions for the default model).
    std::string longtext;
    for (int i = 0; i < 400; ++i) longtext += "Describe this image. ";
    check_error_object(server.post({{"messages", {{{"role", "user"}, {"content", longtext}}}}}), 400, "context_length_exceeded");
    // A streamed request that fails before the first token gets the status too, not a stream.
    check_error_object(server.post({{"stream", true}, {"messages", {{{"role", "user"}, {"content", longtext}}}}}), 400,
                       "context_length_exceeded");

    // Allowed local media: a path and a file:// URL give the data: URI's answer.
    const json greedy = {{"temperature", 0}, {"max_tokens", 30}};
    auto ask = [&](const std::string& url) {
        json b = greedy;
        b["messages"] = user_with_image(url, "Describe this image.");
        return answer_text(server.post(b));
    };
    const std::string ref = ask(data_uri(tmp / "media" / "scene.png"));
    CHECK(ask((tmp / "media" / "scene.png").string()) == ref);
    CHECK(ask("file://" + (tmp / "media" / "scene.png").string()) == ref);
    CHECK(ask("scene.png") == ref);

    auto h = cli.Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(server.stop() == 0);
}

TEST_CASE("serve: --api-key guards /v1/ (401), /health stays open", "[serve][cli]") {
    ServeProcess server("--api-key s3cret");
    const json body = {{"messages", {{{"role", "user"}, {"content", "Describe this image."}}}}, {"max_tokens", 2}};
    check_error_object(server.post(body), 401, "invalid_api_key");
    check_error_object(server.post(body, {{"Authorization", "Bearer wrong"}}), 401, "invalid_api_key");
    check_error_object(server.post(body, {{"Authorization", "s3cret"}}), 401, "invalid_api_key");
    auto cli = server.client();
    check_error_object(cli.Get("/v1/models"), 401);
    answer_text(server.post(body, {{"Authorization", "Bearer s3cret"}}));
    auto h = cli.Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);

    // The key from a file (its first line), so that it is not on the command line.
    test::TempDir tmp;
    test::write_file(tmp / "key", std::string("from-a-file\n"));
    ServeProcess keyed("--api-key-file " + test::shell_quote((tmp / "key").string()));
    check_error_object(keyed.post(body, {{"Authorization", "Bearer s3cret"}}), 401, "invalid_api_key");
    answer_text(keyed.post(body, {{"Authorization", "Bearer from-a-file"}}));
}

TEST_CASE("serve: http image URLs are fetched only with --allow-remote-media", "[serve][cli]") {
    // A second HTTP server in this process plays the remote host.
    httplib::Server media;
    const std::string png = slurp(kExamples / "scene_6.png");
    media.Get("/scene.png", [&](const httplib::Request&, httplib::Response& res) { res.set_content(png, "image/png"); });
    const int media_port = media.bind_to_any_port("127.0.0.1");
    REQUIRE(media_port > 0);
    std::thread media_thread([&] { media.listen_after_bind(); });
    const std::string url = "http://127.0.0.1:" + std::to_string(media_port) + "/scene.png";
    {
        ServeProcess server("--allow-remote-media");
        const json body = {{"messages", user_with_image(url, "Describe this image.")}, {"temperature", 0}, {"max_tokens", 30}};
        const std::string remote = answer_text(server.post(body));
        json ref = body;
        ref["messages"] = user_with_image(data_uri(kExamples / "scene_6.png"), "Describe this image.");
        CHECK(answer_text(server.post(ref)) == remote);
        json missing = body;
        missing["messages"] = user_with_image(url + ".gone", "hi");
        check_error_object(server.post(missing), 400, "invalid_image");
    }
    media.stop();
    media_thread.join();
}

TEST_CASE("serve: 100 concurrent requests all answered well-formed, server healthy after", "[serve][cli][load]") {
    ServeProcess server("");
    const std::vector<std::string> scenes = {data_uri(kExamples / "scene_1.png"), data_uri(kExamples / "scene_2.png"),
                                             data_uri(kExamples / "scene_3.png")};
    const std::vector<std::string> prompts = {"Describe this image.", "How many shapes are there?"};
    // The greedy answer of each (scene, prompt), asked one at a time.
    std::vector<std::string> expected;
    for (const auto& s : scenes)
        for (const auto& p : prompts)
            expected.push_back(answer_text(
                server.post({{"messages", user_with_image(s, p)}, {"temperature", 0}, {"max_tokens", 24}})));

    constexpr int kRequests = 100;
    std::vector<int> status(kRequests, 0);
    std::vector<std::string> got(kRequests), errors(kRequests);
    std::vector<std::thread> threads;
    std::atomic<int> go{0};
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kRequests; ++i)
        threads.emplace_back([&, i] {
            while (!go) std::this_thread::yield();
            const int k = i % int(expected.size());
            json body = {{"messages", user_with_image(scenes[size_t(k) / 2], prompts[size_t(k) % 2])},
                         {"temperature", 0},
                         {"max_tokens", 24}};
            const bool stream = i % 3 == 0;
            if (stream) body["stream"] = true;
            auto r = server.post(body);
            if (!r) {
                errors[size_t(i)] = "no response: " + httplib::to_string(r.error());
                return;
            }
            status[size_t(i)] = r->status;
            try {
                if (!stream) {
                    const json j = json::parse(r->body);
                    got[size_t(i)] = j.at("choices").at(0).at("message").at("content").get<std::string>();
                    return;
                }
                size_t at = 0;
                std::string last;
                while (at < r->body.size()) {
                    const size_t end = r->body.find("\n\n", at);
                    if (end == std::string::npos || r->body.compare(at, 6, "data: ") != 0) throw std::runtime_error("bad SSE");
                    last = r->body.substr(at + 6, end - at - 6);
                    at = end + 2;
                    if (last == "[DONE]") break;
                    const json c = json::parse(last);
                    const json& d = c.at("choices").at(0).at("delta");
                    if (d.contains("content")) got[size_t(i)] += d["content"].get<std::string>();
                }
                if (last != "[DONE]" || at != r->body.size()) throw std::runtime_error("stream does not end with [DONE]");
            } catch (const std::exception& e) {
                errors[size_t(i)] = std::string(e.what()) + ": " + r->body.substr(0, 200);
            }
        });
    go = 1;
    for (auto& t : threads) t.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int ok = 0;
    for (int i = 0; i < kRequests; ++i) {
        INFO("request " << i << ": " << errors[size_t(i)]);
        CHECK(errors[size_t(i)].empty());
        CHECK(status[size_t(i)] == 200);
        CHECK(got[size_t(i)] == expected[size_t(i) % expected.size()]);
        ok += status[size_t(i)] == 200 && errors[size_t(i)].empty();
    }
    WARN("serve load: " << ok << "/" << kRequests << " concurrent requests answered in " << secs << " s");
    auto cli = server.client();
    auto h = cli.Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);
    const json health = json::parse(h->body);
    CHECK(health["status"] == "ok");
    CHECK(health["queued"] == 0);
    CHECK(health["completed"].get<int>() == kRequests + int(expected.size()));
    CHECK(server.stop() == 0);
}

TEST_CASE("serve: a full queue answers 503 server_busy, then recovers", "[serve][cli]") {
    ServeProcess server("--max-queue 1 --http-threads 16");
    // Each answer fills the whole context: the schema forbids ending before 200 numbers.
    const json slow = {{"messages", {{{"role", "user"}, {"content", "How many shapes are there?"}}}},
                       {"temperature", 0},
                       {"max_tokens", 4000},  // capped by the context
                       {"response_format",
                        {{"type", "json_schema"},
                         {"json_schema", {{"schema", {{"type", "array"}, {"items", {{"type", "integer"}}}, {"minItems", 200}}}}}}}};
    constexpr int kRequests = 12;
    std::vector<int> status(kRequests, 0);
    std::vector<std::string> bodies(kRequests);
    std::vector<std::thread> threads;
    for (int i = 0; i < kRequests; ++i)
        threads.emplace_back([&, i] {
            auto r = server.post(slow);
            if (!r) return;
            status[size_t(i)] = r->status;
            bodies[size_t(i)] = r->body;
        });
    for (auto& t : threads) t.join();
    int busy = 0, ok = 0;
    for (int i = 0; i < kRequests; ++i) {
        INFO(bodies[size_t(i)]);
        REQUIRE((status[size_t(i)] == 200 || status[size_t(i)] == 503));
        const json j = json::parse(bodies[size_t(i)]);
        if (status[size_t(i)] == 503) {
            CHECK(j["error"]["code"] == "server_busy");
            CHECK(j["error"]["type"] == "server_error");
            ++busy;
        } else {
            ++ok;
        }
    }
    CHECK(ok >= 1);
    CHECK(busy >= 1);
    std::string finish;
    answer_text(server.post(slow), &finish);
    CHECK(finish == "length");
}

TEST_CASE("serve: the golden SmolVLM pair answers as the Hugging Face reference", "[serve][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const json ref = json::parse(slurp(dir / "ref-hf-e2e" / "result.json"))["image_prompts"][0];
    ServeProcess server("-m " + test::shell_quote((dir / "smolvlm-tiny-text-f32.gguf").string()) + " --mmproj " +
                        test::shell_quote((dir / "mmproj-smolvlm-tiny-f32.gguf").string()) + " --alias smol");
    const json body = {{"model", "smol"},
                       {"messages", user_with_image(data_uri(dir / "images" / ref["image"].get<std::string>()),
                                                    "Describe this image.")},
                       {"temperature", 0},
                       {"max_tokens", 16}};
    auto r = server.post(body);
    CHECK(answer_text(r) == ref["greedy"]["text"].get<std::string>());
    CHECK(json::parse(r->body)["usage"]["prompt_tokens"] == ref["n_tokens"]);
}
