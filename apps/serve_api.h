// The OpenAI chat-completions API as `glimpse serve` speaks it: a request body becomes a
// ChatRequest (every field checked, each problem an ApiError naming the field), image_url
// parts become image bytes under the media policy, and results become the JSON objects that
// OpenAI clients expect:
//
//   POST /v1/chat/completions  {"model", "messages": [{"role", "content": "text" |
//        [{"type": "text", "text"}, {"type": "image_url", "image_url": {"url"}}]}], "stream",
//        "max_tokens", "temperature", "top_p", "seed", "stop", "logprobs", "top_logprobs",
//        "response_format"}
//   → {"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0,
//        "message": {"role": "assistant", "content"}, "logprobs", "finish_reason"}], "usage"}
//   stream → "data: {chat.completion.chunk}\n\n" ... "data: [DONE]\n\n"
//   errors → {"error": {"message", "type", "param", "code"}} with the HTTP status
//
// Nothing here touches the model or the network except fetch of remote media, which is
// refused unless the policy allows it.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/chat_template.h"
#include "text/sampler.h"

namespace glimpse::app::serve {

// An error reported to the client as OpenAI's error object with an HTTP status.
class ApiError : public std::runtime_error {
public:
    ApiError(int status, const std::string& message, std::string param = "", std::string code = "")
        : std::runtime_error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
    int status() const { return status_; }
    const std::string& param() const { return param_; }
    const std::string& code() const { return code_; }
    // "invalid_request_error" (4xx but 401), "authentication_error" (401), "server_error" (5xx).
    std::string type() const;

private:
    int status_;
    std::string param_, code_;
};

// {"error": {"message", "type", "param" (null when empty), "code" (null when empty)}}
nlohmann::json error_json(const ApiError& e);

// Where images may come from.
struct MediaPolicy {
    std::string allowed_local_dir;     // file:// URLs and paths only under this folder ("" = refused)
    bool allow_remote = false;         // http(s) URLs fetched (refused when false)
    size_t max_image_bytes = 32u << 20; // per image, after base64 decoding or download
    int remote_timeout_s = 20;
};

// How the loaded model wants images written into message text.
struct PromptStyle {
    std::string marker = "<image>";     // the chat template's image marker
    bool newline_after_image = false;   // LLaVA: "<image>\n" as its templates write it
};

// One request, checked.
struct ChatRequest {
    std::optional<std::string> model;        // absent: the loaded model
    std::vector<ChatMessage> messages;       // image parts replaced by PromptStyle::marker, in order
    std::vector<std::string> image_urls;     // one per marker, in order
    std::vector<std::string> image_params;   // where each was: "messages[0].content[1].image_url.url"
    bool has_system = false;                 // the first message is a system message
    bool stream = false;
    bool include_usage = false;              // stream_options.include_usage
    std::optional<int> max_tokens;           // max_tokens or max_completion_tokens
    SamplerParams sampling;                  // temperature (default 1), top_p, seed, top_k, min_p
    bool seed_given = false;
    std::vector<std::string> stop;
    bool logprobs = false;
    int top_logprobs = 0;
    // response_format: "text" (nothing), "json_object" or "json_schema" (schema_text is the
    // schema, "{}" for json_object).
    std::string response_format = "text";
    std::string schema_text;
};

// Parses and checks a request body. ApiError(400) naming the field for malformed JSON, a
// missing or mistyped field, a value out of range, an unknown role, an image in a
// non-user message, text that contains the image marker, n != 1, or non-zero
// presence/frequency penalties (not supported).
ChatRequest parse_chat_request(const std::string& body, const PromptStyle& style);

// Standard base64 (RFC 4648, padding optional, ASCII whitespace ignored). nullopt when the
// text holds anything else or is cut at an impossible length.
std::optional<std::vector<uint8_t>> base64_decode(const std::string& text);
std::string base64_encode(const uint8_t* data, size_t n);

// The bytes of one image_url: a data: URI with base64, a file:// URL or a plain path (only
// under policy.allowed_local_dir, after resolving symlinks and ".."), or an http(s) URL
// (only when policy.allow_remote). ApiError(400) with param `param` otherwise, and for a
// file that is missing, unreadable or larger than the limit.
std::vector<uint8_t> load_image_url(const std::string& url, const MediaPolicy& policy, const std::string& param);

// One generated token as logprobs reports it.
struct TokenLogprob {
    std::string token;  // its text (may be a partial UTF-8 sequence)
    float logprob = 0;
    std::vector<std::pair<std::string, float>> top;  // the most likely tokens with their logprobs
};
nlohmann::json logprobs_json(const std::vector<TokenLogprob>& tokens);  // {"content": [...]}

struct Usage {
    int prompt_tokens = 0, completion_tokens = 0;
};
nlohmann::json usage_json(const Usage& u);

// "chatcmpl-" followed by 24 random hex digits.
std::string completion_id();

// The whole answer (stream: false).
nlohmann::json completion_json(const std::string& id, int64_t created, const std::string& model,
                               const std::string& text, const std::string& finish_reason, const Usage& usage,
                               const std::vector<TokenLogprob>* logprobs);
// One streamed chunk: delta {"role"?, "content"?}, finish_reason null or given, optional logprobs.
nlohmann::json chunk_json(const std::string& id, int64_t created, const std::string& model, const nlohmann::json& delta,
                          const std::string& finish_reason, const std::vector<TokenLogprob>* logprobs);
// The last chunk when stream_options.include_usage: empty choices, the usage.
nlohmann::json usage_chunk_json(const std::string& id, int64_t created, const std::string& model, const Usage& usage);

// "data: <json>\n\n" (invalid UTF-8 replaced so the line is always valid JSON).
std::string sse_event(const nlohmann::json& j);
// JSON text with invalid UTF-8 replaced by U+FFFD.
std::string dump(const nlohmann::json& j);

}  // namespace glimpse::app::serve
