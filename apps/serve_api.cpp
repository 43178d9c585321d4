#include "apps/serve_api.h"

#include <httplib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

namespace glimpse::app::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

ApiError invalid(const std::string& message, const std::string& param, const std::string& code = "") {
    return ApiError(400, message, param, code);
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::string lower(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// ---- typed field access with the field's name in every error ----

const char* type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::string: return "a string";
        case json::value_t::array: return "an array";
        case json::value_t::object: return "an object";
        default: return "a number";
    }
}

[[noreturn]] void wrong_type(const json& v, const std::string& param, const char* expected) {
    throw invalid(param + " must be " + expected + ", not " + type_name(v), param);
}

bool get_bool(const json& v, const std::string& param) {
    if (!v.is_boolean()) wrong_type(v, param, "a boolean");
    return v.get<bool>();
}

int64_t get_int(const json& v, const std::string& param, int64_t lo, int64_t hi) {
    int64_t x = 0;
    if (v.is_number_integer()) x = v.get<int64_t>();
    else if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
             std::fabs(v.get<double>()) < 9e15)
        x = int64_t(v.get<double>());
    else wrong_type(v, param, "an integer");
    if (x < lo || x > hi)
        throw invalid(param + " is " + std::to_string(x) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
                      param);
    return x;
}

double get_number(const json& v, const std::string& param, double lo, double hi) {
    if (!v.is_number()) wrong_type(v, param, "a number");
    const double x = v.get<double>();
    if (!(x >= lo && x <= hi))
        throw invalid(param + " is " + v.dump() + ", outside [" + json(lo).dump() + ", " + json(hi).dump() + "]", param);
    return x;
}

const std::string& get_string(const json& v, const std::string& param) {
    if (!v.is_string()) wrong_type(v, param, "a string");
    return v.get_ref<const std::string&>();
}

// Reads the content of one message into `out`: a string, or an array of text / image_url
// parts (images become the marker, their URLs appended to `urls`).
void read_content(const json& content, const std::string& param, const std::string& role, const PromptStyle& style,
                  std::string& out, std::vector<std::string>& urls, std::vector<std::string>& params) {
    auto add_text = [&](const std::string& text, const std::string& p) {
        if (text.find(style.marker) != std::string::npos || text.find("<__media__>") != std::string::npos)
            throw invalid(p + " contains the image marker '" + style.marker + "'; send images as image_url parts", p);
        out += text;
    };
    if (content.is_null()) return;  // an assistant turn that only called tools
    if (content.is_string()) return add_text(content.get_ref<const std::string&>(), param);
    if (!content.is_array()) wrong_type(content, param, "a string or an array of content parts");
    for (size_t i = 0; i < content.size(); ++i) {
        const json& part = content[i];
        const std::string p = param + "[" + std::to_string(i) + "]";
        if (!part.is_object()) wrong_type(part, p, "an object");
        if (!part.contains("type")) throw invalid(p + ".type is missing", p + ".type");
        const std::string& type = get_string(part["type"], p + ".type");
        if (type == "text") {
            if (!part.contains("text")) throw invalid(p + ".text is missing", p + ".text");
            add_text(get_string(part["text"], p + ".text"), p + ".text");
        } else if (type == "image_url") {
            if (role != "user") throw invalid(p + ": images can only be in user messages, not " + role, p);
            if (!part.contains("image_url")) throw invalid(p + ".image_url is missing", p + ".image_url");
            const json& iu = part["image_url"];
            // {"url": "..."}, and the older plain string form.
            const json& url = iu.is_object() && iu.contains("url") ? iu["url"] : iu;
            urls.push_back(get_string(url, p + ".image_url.url"));
            params.push_back(p + ".image_url.url");
            out += style.marker;
            if (style.newline_after_image) out += "\n";
        } else {
            throw invalid(p + ".type '" + type + "' is not supported (text, image_url)", p + ".type");
        }
    }
}

void read_messages(const json& msgs, const PromptStyle& style, ChatRequest& r) {
    if (!msgs.is_array()) wrong_type(msgs, "messages", "an array");
    if (msgs.empty()) throw invalid("messages is empty", "messages");
    for (size_t i = 0; i < msgs.size(); ++i) {
        const json& m = msgs[i];
        const std::string p = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) wrong_type(m, p, "an object");
        if (!m.contains("role")) throw invalid(p + ".role is missing", p + ".role");
        std::string role = get_string(m["role"], p + ".role");
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant")
            throw invalid(p + ".role '" + role + "' is not supported (system, developer, user, assistant)", p + ".role");
        if (role == "system" && i != 0) throw invalid(p + ": a system message must come first", p + ".role");
        if (!m.contains("content") && role != "assistant") throw invalid(p + ".content is missing", p + ".content");
        ChatMessage cm{role, ""};
        if (m.contains("content")) read_content(m["content"], p + ".content", role, style, cm.content, r.image_urls, r.image_params);
        r.messages.push_back(std::move(cm));
    }
    r.has_system = r.messages.front().role == "system";
    if (r.messages.back().role != "user") throw invalid("the last message must be a user message", "messages");
}

void read_stop(const json& v, ChatRequest& r) {
    if (v.is_null()) return;
    if (v.is_string()) {
        if (!v.get_ref<const std::string&>().empty()) r.stop.push_back(v.get<std::string>());
        return;
    }
    if (!v.is_array()) wrong_type(v, "stop", "a string or an array of strings");
    if (v.size() > 4) throw invalid("stop has " + std::to_string(v.size()) + " strings, at most 4", "stop");
    for (size_t i = 0; i < v.size(); ++i) {
        const std::string& s = get_string(v[i], "stop[" + std::to_string(i) + "]");
        if (!s.empty()) r.stop.push_back(s);
    }
}

void read_response_format(const json& v, ChatRequest& r) {
    if (v.is_null()) return;
    if (!v.is_object()) wrong_type(v, "response_format", "an object");
    if (!v.contains("type")) throw invalid("response_format.type is missing", "response_format.type");
    const std::string& type = get_string(v["type"], "response_format.type");
    if (type == "text") return;
    if (type == "json_object") {
        r.response_format = type;
        r.schema_text = "{}";
        return;
    }
    if (type != "json_schema")
        throw invalid("response_format.type '" + type + "' is not supported (text, json_object, json_schema)",
                      "response_format.type");
    if (!v.contains("json_schema") || !v["json_schema"].is_object())
        throw invalid("response_format.json_schema must be an object with a schema", "response_format.json_schema");
    const json& js = v["json_schema"];
    if (!js.contains("schema")) throw invalid("response_format.json_schema.schema is missing", "response_format.json_schema.schema");
    if (!js["schema"].is_object() && !js["schema"].is_boolean())
        wrong_type(js["schema"], "response_format.json_schema.schema", "an object");
    r.response_format = type;
    r.schema_text = js["schema"].dump();  // key order fixed by the caller (parse_chat_request)
}

}  // namespace

std::string ApiError::type() const {
    if (status_ == 401) return "authentication_error";
    if (status_ >= 500) return "server_error";
    return "invalid_request_error";
}

json error_json(const ApiError& e) {
    return {{"error",
             {{"message", e.what()},
              {"type", e.type()},
              {"param", e.param().empty() ? json(nullptr) : json(e.param())},
              {"code", e.code().empty() ? json(nullptr) : json(e.code())}}}};
}

ChatRequest parse_chat_request(const std::string& body, const PromptStyle& style) {
    const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw invalid("the request body is not valid JSON", "", "invalid_json");
    if (!j.is_object()) throw invalid("the request body must be a JSON object", "");
    ChatRequest r;
    r.sampling.temperature = 1.0f;  // OpenAI's default
    if (j.contains("model") && !j["model"].is_null()) r.model = get_string(j["model"], "model");
    if (!j.contains("messages")) throw invalid("messages is missing", "messages");
    read_messages(j["messages"], style, r);
    for (const auto& [key, v] : j.items()) {
        if (v.is_null()) continue;  // OpenAI clients send null for "not given"
        if (key == "stream") r.stream = get_bool(v, key);
        else if (key == "stream_options") {
            if (!v.is_object()) wrong_type(v, key, "an object");
            if (v.contains("include_usage")) r.include_usage = get_bool(v["include_usage"], "stream_options.include_usage");
        } else if (key == "max_tokens" || key == "max_completion_tokens") r.max_tokens = int(get_int(v, key, 1, 1 << 24));
        else if (key == "temperature") r.sampling.temperature = float(get_number(v, key, 0.0, 2.0));
        else if (key == "top_p") {
            r.sampling.top_p = float(get_number(v, key, 0.0, 1.0));
            if (r.sampling.top_p <= 0) throw invalid("top_p must be > 0", key);
        } else if (key == "top_k") r.sampling.top_k = int(get_int(v, key, 0, 1 << 20));   // llama.cpp's extension
        else if (key == "min_p") r.sampling.min_p = float(get_number(v, key, 0.0, 1.0));  // llama.cpp's extension
        else if (key == "seed") {
            r.sampling.seed = uint64_t(get_int(v, key, INT64_MIN, INT64_MAX));
            r.seed_given = true;
        } else if (key == "stop") read_stop(v, r);
        else if (key == "logprobs") r.logprobs = get_bool(v, key);
        else if (key == "top_logprobs") r.top_logprobs = int(get_int(v, key, 0, 20));
        else if (key == "n") get_int(v, key, 1, 1);
        else if (key == "presence_penalty" || key == "frequency_penalty") {
            if (get_number(v, key, -2.0, 2.0) != 0) throw invalid(key + " is not supported (only 0)", key);
        } else if (key == "response_format") read_response_format(v, r);
    }
    if (r.response_format == "json_schema") {
        // The schema's property order is the order the answer writes them in; json sorts keys.
        r.schema_text = nlohmann::ordered_json::parse(body)["response_format"]["json_schema"]["schema"].dump();
    }
    if (r.top_logprobs > 0 && !r.logprobs) throw invalid("top_logprobs needs logprobs: true", "top_logprobs");
    if (r.include_usage && !r.stream) throw invalid("stream_options needs stream: true", "stream_options");
    return r;
}

// ---- base64 ----------------------------------------------------------------------------------

std::optional<std::vector<uint8_t>> base64_decode(const std::string& text) {
    static const auto table = [] {
        std::array<int8_t, 256> t{};
        t.fill(-1);
        const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; ++i) t[uint8_t(alphabet[i])] = int8_t(i);
        return t;
    }();
    std::vector<uint8_t> out;
    out.reserve(text.size() / 4 * 3 + 3);
    uint32_t acc = 0;
    int bits = 0, n = 0, pad = 0;
    for (unsigned char c : text) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            ++pad;
            continue;
        }
        if (pad || table[c] < 0) return std::nullopt;  // data after padding, or not base64
        acc = (acc << 6) | uint32_t(table[c]);
        bits += 6;
        ++n;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(uint8_t(acc >> bits));
        }
    }
    // n % 4 == 1 cannot come from whole bytes; padding must complete the last quantum.
    if (n % 4 == 1 || pad > 2 || (pad && (n + pad) % 4 != 0)) return std::nullopt;
    return out;
}

std::string base64_encode(const uint8_t* data, size_t n) {
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = uint32_t(data[i]) << 16 | (i + 1 < n ? uint32_t(data[i + 1]) << 8 : 0) |
                           (i + 2 < n ? uint32_t(data[i + 2]) : 0);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out += i + 2 < n ? alphabet[v & 63] : '=';
    }
    return out;
}

// ---- image sources -------------------------------------------------------------------------

namespace {

std::string percent_decode(const std::string& s, const std::string& param) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size() || !std::isxdigit(uint8_t(s[i + 1])) || !std::isxdigit(uint8_t(s[i + 2])))
            throw invalid(param + ": bad percent-escape in the file URL", param);
        out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
    }
    return out;
}

std::vector<uint8_t> from_data_uri(const std::string& url, const MediaPolicy& policy, const std::string& param) {
    const size_t comma = url.find(',');
    if (comma == std::string::npos) throw invalid(param + ": a data: URI needs a comma before its data", param);
    const std::string meta = lower(url.substr(5, comma - 5));
    if (meta.size() < 7 || meta.compare(meta.size() - 7, 7, ";base64") != 0)
        throw invalid(param + ": only base64 data: URIs are accepted (data:image/png;base64,...)", param);
    if ((url.size() - comma - 1) / 4 * 3 > policy.max_image_bytes + 3)
        throw ApiError(413, param + ": the image is larger than the " + std::to_string(policy.max_image_bytes >> 20) +
                                " MiB limit", param, "image_too_large");
    auto bytes = base64_decode(url.substr(comma + 1));
    if (!bytes) throw invalid(param + ": the data: URI is not valid base64", param, "invalid_base64");
    if (bytes->empty()) throw invalid(param + ": the data: URI holds no bytes", param, "invalid_image");
    return std::move(*bytes);
}

std::vector<uint8_t> from_local_path(const std::string& raw, const MediaPolicy& policy, const std::string& param) {
    if (policy.allowed_local_dir.empty())
        throw invalid(param + ": local files are refused (the server was started without --allowed-local-media)", param,
                      "local_media_refused");
    std::error_code ec;
    const fs::path root = fs::canonical(policy.allowed_local_dir, ec);
    if (ec) throw ApiError(500, "--allowed-local-media " + policy.allowed_local_dir + ": " + ec.message());
    fs::path p(raw);
    if (p.is_relative()) p = root / p;
    const fs::path real = fs::canonical(p, ec);  // symlinks and ".." resolved before the check
    if (ec) throw invalid(param + ": " + raw + ": no such file", param, "invalid_image");
    auto [r_end, p_it] = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
    if (r_end != root.end())
        throw invalid(param + ": " + raw + " is outside the folder allowed by --allowed-local-media", param,
                      "local_media_refused");
    if (!fs::is_regular_file(real, ec)) throw invalid(param + ": " + raw + " is not a file", param, "invalid_image");
    const uintmax_t size = fs::file_size(real, ec);
    if (ec) throw invalid(param + ": " + raw + ": cannot read", param, "invalid_image");
    if (size > policy.max_image_bytes)
        throw ApiError(413, param + ": " + raw + " is larger than the " + std::to_string(policy.max_image_bytes >> 20) +
                                " MiB limit", param, "image_too_large");
    std::ifstream f(real, std::ios::binary);
    std::vector<uint8_t> bytes(size);
    if (!f || !f.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size)))
        throw invalid(param + ": " + raw + ": cannot read", param, "invalid_image");
    return bytes;
}

std::vector<uint8_t> from_remote(const std::string& url, const MediaPolicy& policy, const std::string& param) {
    if (!policy.allow_remote)
        throw invalid(param + ": remote image URLs are refused (start the server with --allow-remote-media)", param,
                      "remote_media_refused");
    const size_t host_start = url.find("://") + 3;
    const size_t path_start = url.find('/', host_start);
    const std::string origin = url.substr(0, path_start);
    const std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);
    httplib::Client cli(origin);
    if (!cli.is_valid()) throw invalid(param + ": cannot use the URL " + origin, param, "invalid_image");
    cli.set_connection_timeout(policy.remote_timeout_s);
    cli.set_read_timeout(policy.remote_timeout_s);
    cli.set_follow_location(true);
    std::vector<uint8_t> bytes;
    bool too_big = false;
    auto res = cli.Get(path, [&](const char* data, size_t n) {
        if (bytes.size() + n > policy.max_image_bytes) {
            too_big = true;
            return false;
        }
        bytes.insert(bytes.end(), data, data + n);
        return true;
    });
    if (too_big)
        throw ApiError(413, param + ": the image at " + url + " is larger than the " +
                                std::to_string(policy.max_image_bytes >> 20) + " MiB limit", param, "image_too_large");
    if (!res) throw invalid(param + ": cannot fetch " + url + " (" + httplib::to_string(res.error()) + ")", param, "invalid_image");
    if (res->status != 200)
        throw invalid(param + ": fetching " + url + " gave HTTP " + std::to_string(res->status), param, "invalid_image");
    return bytes;
}

}  // namespace

std::vector<uint8_t> load_image_url(const std::string& url, const MediaPolicy& policy, const std::string& param) {
    const std::string scheme = lower(url.substr(0, url.find(':') == std::string::npos ? 0 : url.find(':') + 1));
    if (scheme == "data:") return from_data_uri(url, policy, param);
    if (scheme == "http:" || scheme == "https:") return from_remote(url, policy, param);
    if (starts_with(lower(url), "file://")) {
        std::string rest = url.substr(7);
        if (starts_with(rest, "localhost/")) rest = rest.substr(9);
        if (!starts_with(rest, "/")) throw invalid(param + ": a file:// URL must name an absolute path", param);
        return from_local_path(percent_decode(rest, param), policy, param);
    }
    if (url.empty()) throw invalid(param + " is empty", param);
    // Anything else with a scheme ("ftp:", "s3:") is refused; a bare path is a local file.
    const size_t colon = url.find(':'), slash = url.find('/');
    if (colon != std::string::npos && (slash == std::string::npos || colon < slash) && colon > 1)
        throw invalid(param + ": unsupported URL scheme (data:, file://, http(s):// are accepted)", param);
    return from_local_path(url, policy, param);
}

// ---- responses ---------------------------------------------------------------------------------

namespace {

json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
}

}  // namespace

json logprobs_json(const std::vector<TokenLogprob>& tokens) {
    json content = json::array();
    for (const TokenLogprob& t : tokens) {
        json top = json::array();
        for (const auto& [tok, lp] : t.top) top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", bytes_of(tok)}});
        content.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", bytes_of(t.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
}

json usage_json(const Usage& u) {
    return {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

std::string completion_id() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx%08llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng() & 0xffffffffu));
    return std::string("chatcmpl-") + buf;
}

json completion_json(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                     const std::string& finish_reason, const Usage& usage, const std::vector<TokenLogprob>* logprobs) {
    json choice = {{"index", 0},
                   {"message", {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}}},
                   {"logprobs", logprobs ? logprobs_json(*logprobs) : json(nullptr)},
                   {"finish_reason", finish_reason}};
    return {{"id", id},           {"object", "chat.completion"},     {"created", created}, {"model", model},
            {"choices", {choice}}, {"usage", usage_json(usage)}, {"system_fingerprint", nullptr}};
}

json chunk_json(const std::string& id, int64_t created, const std::string& model, const json& delta,
                const std::string& finish_reason, const std::vector<TokenLogprob>* logprobs) {
    json choice = {{"index", 0},
                   {"delta", delta},
                   {"logprobs", logprobs ? logprobs_json(*logprobs) : json(nullptr)},
                   {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
    return {{"id", id},       {"object", "chat.completion.chunk"}, {"created", created},
            {"model", model}, {"choices", {choice}},                {"system_fingerprint", nullptr}};
}

json usage_chunk_json(const std::string& id, int64_t created, const std::string& model, const Usage& usage) {
    return {{"id", id},       {"object", "chat.completion.chunk"}, {"created", created},
            {"model", model}, {"choices", json::array()},          {"usage", usage_json(usage)}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace glimpse::app::serve
