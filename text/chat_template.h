// Chat templates: how a conversation becomes the prompt text the model was trained on. There
// is no Jinja engine: each supported family is a small hand-written renderer, chosen by
// recognising the family's template text (GGUF `tokenizer.chat_template`, or a Hugging Face
// folder's chat_template.json / tokenizer_config.json) or by name (`--chat-template NAME`).
//
//   smolvlm  SmolVLM / Idefics3 (MODELS.md §3.9), the Hugging Face template:
//            "<|im_start|>User: hi<end_of_utterance>\nAssistant:"; a message that starts with
//            an image gets no space after the colon ("User:<image>..."); a system message is
//            rendered like any other role ("System: ...<end_of_utterance>\n").
//   llava    LLaVA-1.5 as its GGUF / llava-hf templates write it (MODELS.md §4.5):
//            "{system} USER: <image>\nWhat is shown? ASSISTANT:", assistant turns end with
//            "</s>". The GGUF template carries a default system prompt, which is used when
//            no --system is given.
//   vicuna   llama.cpp's built-in "vicuna" (what its LLaVA runs use):
//            "{system}\n\nUSER: hi\nASSISTANT:", assistant turns end with "</s>\n".
//   chatml   "<|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n
//            <|im_start|>assistant\n".
//   none     the raw prompt: the user text as it is, no system prompt.
//
// BOS is not part of the rendered text: the tokenizer adds it where the vocabulary says so.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace glimpse {

enum class ChatFamily { None, SmolVLM, Llava, Vicuna, ChatML };

struct ChatMessage {
    std::string role;     // "system", "user" or "assistant"
    std::string content;  // may contain the image marker where images go
};

struct ChatTemplate {
    ChatFamily family = ChatFamily::None;
    std::string default_system;          // used when the caller gives no system prompt
    std::string image_marker = "<image>";  // how images appear in `content`

    std::string_view name() const;  // "smolvlm", "llava", "vicuna", "chatml", "none"
    bool supports_system() const { return family != ChatFamily::None; }

    // The prompt for `messages`, then the assistant's opening when add_generation_prompt.
    // A leading system message replaces default_system. Throws Error(Usage) for a role the
    // family does not know, or a system message that is not first.
    std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;

    // One user turn: system (nullopt = default_system; "" = none) and the user text.
    std::string render_user(const std::string& user, const std::optional<std::string>& system = std::nullopt) const;
};

// By name (case-insensitive): smolvlm, llava, vicuna, chatml, none/raw. Error(Usage) listing
// the names otherwise.
ChatTemplate chat_template_by_name(std::string_view name);

// Recognises a Jinja template of a supported family; nullopt if it is none of them.
std::optional<ChatTemplate> recognise_chat_template(std::string_view jinja);

// The chat template text of a Hugging Face folder: chat_template.json's "chat_template", else
// tokenizer_config.json's (a string, or the entry named "default" of a list); "" if none.
std::string hf_chat_template_text(const std::string& dir);

// Names accepted by chat_template_by_name, for help texts.
std::string_view chat_template_names();

}  // namespace glimpse
