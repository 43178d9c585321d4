#include "text/chat_template.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "weights/hf_folder.h"

namespace glimpse {

namespace {

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

std::string lower(std::string_view s) {
    std::string r(s);
    for (char& ch : r) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    return r;
}

// The system message a Jinja template sets when the conversation has none:
// {% set system_message = "..." %} (either quote character). "" if there is no such line.
std::string jinja_default_system(std::string_view jinja) {
    constexpr std::string_view key = "set system_message = ";
    size_t at = 0;
    while ((at = jinja.find(key, at)) != std::string_view::npos) {
        at += key.size();
        if (at >= jinja.size()) break;
        const char quote = jinja[at];
        if (quote != '"' && quote != '\'') continue;  // e.g. = messages[0]['content']
        const size_t end = jinja.find(quote, at + 1);
        if (end == std::string_view::npos) break;
        return std::string(jinja.substr(at + 1, end - at - 1));
    }
    return "";
}

[[noreturn]] void bad_role(const ChatTemplate& t, const std::string& role) {
    throw Error(ErrorKind::Usage, "chat template " + std::string(t.name()) + ": unknown role '" + role +
                                      "' (expected system, user or assistant)");
}

// "user" -> "User" (Jinja's capitalize: first letter upper, the rest lower).
std::string capitalize(const std::string& role) {
    std::string r = lower(role);
    if (!r.empty()) r[0] = char(std::toupper(static_cast<unsigned char>(r[0])));
    return r;
}

void render_smolvlm(const ChatTemplate& t, const std::vector<ChatMessage>& msgs, std::string& out) {
    out += "<|im_start|>";
    for (const auto& m : msgs) {
        if (m.role != "system" && m.role != "user" && m.role != "assistant") bad_role(t, m.role);
        const bool image_first = !t.image_marker.empty() && m.content.rfind(t.image_marker, 0) == 0;
        out += capitalize(m.role) + (image_first ? ":" : ": ") + m.content + "<end_of_utterance>\n";
    }
}

void render_llava(const ChatTemplate& t, const std::vector<ChatMessage>& msgs, std::string& out) {
    for (const auto& m : msgs) {
        if (m.role == "system") out += m.content + " ";
        else if (m.role == "user") out += "USER: " + m.content + " ";
        else if (m.role == "assistant") out += "ASSISTANT: " + m.content + "</s>";
        else bad_role(t, m.role);
    }
}

void render_vicuna(const ChatTemplate& t, const std::vector<ChatMessage>& msgs, std::string& out) {
    for (const auto& m : msgs) {
        if (m.role == "system") out += m.content + "\n\n";
        else if (m.role == "user") out += "USER: " + m.content + "\n";
        else if (m.role == "assistant") out += "ASSISTANT: " + m.content + "</s>\n";
        else bad_role(t, m.role);
    }
}

void render_chatml(const ChatTemplate& t, const std::vector<ChatMessage>& msgs, std::string& out) {
    for (const auto& m : msgs) {
        if (m.role != "system" && m.role != "user" && m.role != "assistant") bad_role(t, m.role);
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    }
}

}  // namespace

std::string_view ChatTemplate::name() const {
    switch (family) {
        case ChatFamily::None: return "none";
        case ChatFamily::SmolVLM: return "smolvlm";
        case ChatFamily::Llava: return "llava";
        case ChatFamily::Vicuna: return "vicuna";
        case ChatFamily::ChatML: return "chatml";
    }
    return "?";
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    for (size_t i = 1; i < messages.size(); ++i)
        if (messages[i].role == "system")
            throw Error(ErrorKind::Usage, "chat template " + std::string(name()) + ": a system message must come first");
    // A leading system message, even an empty one, replaces the default; empty ones vanish.
    std::vector<ChatMessage> msgs;
    if ((messages.empty() || messages[0].role != "system") && !default_system.empty() && supports_system())
        msgs.push_back({"system", default_system});
    for (const auto& m : messages)
        if (!(m.role == "system" && m.content.empty())) msgs.push_back(m);

    std::string out;
    switch (family) {
        case ChatFamily::None:
            // The raw prompt: contents concatenated, nothing added.
            for (const auto& m : msgs) {
                if (m.role == "system")
                    throw Error(ErrorKind::Usage, "a raw prompt (no chat template) has no place for a system prompt");
                out += m.content;
            }
            return out;
        case ChatFamily::SmolVLM:
            render_smolvlm(*this, msgs, out);
            if (add_generation_prompt) out += "Assistant:";
            return out;
        case ChatFamily::Llava:
            render_llava(*this, msgs, out);
            if (add_generation_prompt) out += "ASSISTANT:";
            return out;
        case ChatFamily::Vicuna:
            render_vicuna(*this, msgs, out);
            if (add_generation_prompt) out += "ASSISTANT:";
            return out;
        case ChatFamily::ChatML:
            render_chatml(*this, msgs, out);
            if (add_generation_prompt) out += "<|im_start|>assistant\n";
            return out;
    }
    return out;
}

std::string ChatTemplate::render_user(const std::string& user, const std::optional<std::string>& system) const {
    std::vector<ChatMessage> msgs;
    if (system) msgs.push_back({"system", *system});  // "" still replaces the default
    msgs.push_back({"user", user});
    return render(msgs);
}

ChatTemplate chat_template_by_name(std::string_view name) {
    const std::string n = lower(name);
    ChatTemplate t;
    if (n == "none" || n == "raw") t.family = ChatFamily::None;
    else if (n == "smolvlm" || n == "idefics3") t.family = ChatFamily::SmolVLM;
    else if (n == "llava" || n == "llava-1.5") t.family = ChatFamily::Llava;
    else if (n == "vicuna") t.family = ChatFamily::Vicuna;
    else if (n == "chatml") t.family = ChatFamily::ChatML;
    else
        throw Error(ErrorKind::Usage, "unknown chat template '" + std::string(name) + "' (known: " +
                                          std::string(chat_template_names()) + ")");
    return t;
}

std::string_view chat_template_names() { return "smolvlm, llava, vicuna, chatml, none"; }

std::optional<ChatTemplate> recognise_chat_template(std::string_view jinja) {
    ChatTemplate t;
    if (contains(jinja, "<end_of_utterance>")) {
        t.family = ChatFamily::SmolVLM;
        return t;
    }
    if (contains(jinja, "ASSISTANT:") && (contains(jinja, "USER: ") || contains(jinja, ".upper()"))) {
        t.family = ChatFamily::Llava;
        t.default_system = jinja_default_system(jinja);
        return t;
    }
    if (contains(jinja, "<|im_start|>") && contains(jinja, "<|im_end|>")) {
        t.family = ChatFamily::ChatML;
        return t;
    }
    return std::nullopt;
}

std::string hf_chat_template_text(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const std::string ct = (fs::path(dir) / "chat_template.json").string();
    if (fs::is_regular_file(ct, ec)) {
        const auto j = read_json_file(ct);
        if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
            return j["chat_template"].get<std::string>();
    }
    const std::string tc = (fs::path(dir) / "tokenizer_config.json").string();
    if (fs::is_regular_file(tc, ec)) {
        const auto j = read_json_file(tc);
        if (!j.is_object() || !j.contains("chat_template")) return "";
        const auto& v = j["chat_template"];
        if (v.is_string()) return v.get<std::string>();
        if (v.is_array())
            for (const auto& e : v)
                if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
                    e["template"].is_string())
                    return e["template"].get<std::string>();
    }
    return "";
}

}  // namespace glimpse
