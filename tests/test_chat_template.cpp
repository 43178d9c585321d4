// Chat templates render the golden prompt strings exactly: the Hugging Face forms (ref-hf-e2e
// prompts, which glimpse uses by default) and llama.cpp's built-in ones (ref prompts), and the
// rendered text tokenizes to the golden token ids.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/helpers.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

// "<__media__>" (llama.cpp's marker in ref prompts) -> the marker a template uses.
std::string with_marker(std::string s, const std::string& marker) {
    const std::string m = "<__media__>";
    for (size_t at; (at = s.find(m)) != std::string::npos;) s.replace(at, m.size(), marker);
    return s;
}

ChatTemplate from_gguf(const fs::path& file) {
    const GgufFile f = GgufFile::open(file.string());
    const auto t = recognise_chat_template(f.str("tokenizer.chat_template"));
    REQUIRE(t.has_value());
    return *t;
}

}  // namespace

TEST_CASE("chat smolvlm: GGUF template recognised, golden prompts rendered", "[chat][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const ChatTemplate t = from_gguf(dir / "smolvlm-tiny-text-f32.gguf");
    CHECK(t.family == ChatFamily::SmolVLM);
    CHECK(t.name() == "smolvlm");
    const auto prompts = glimpse::test::read_json(dir / "prompts.json");
    const auto ref = glimpse::test::read_json(dir / "ref/result.json");

    // Text prompt: the same string in llama.cpp and Hugging Face, and the same ids.
    const std::string user = prompts["text_prompts"][0]["user"];
    const std::string text = t.render_user(user, prompts["system"].get<std::string>());
    CHECK(text == ref["text_prompts"][0]["prompt"].get<std::string>());
    CHECK(t.render_user(user) == text);  // no default system
    const auto tok = load_tokenizer_gguf(GgufFile::open((dir / "smolvlm-tiny-text-f32.gguf").string()));
    CHECK(tok->encode(text, true, true) == ref["text_prompts"][0]["tokens"].get<std::vector<int32_t>>());

    // Image prompts: the Hugging Face template (no space after "User:" before an image).
    const auto e2e = glimpse::test::read_json(dir / "ref-hf-e2e/result.json");
    for (const auto& ip : e2e["image_prompts"]) {
        const std::string u = with_marker(ip["user"].get<std::string>(), "<image>");
        CHECK(t.render_user(u) == ip["prompt"].get<std::string>());
    }
}

TEST_CASE("chat smolvlm system prompt and multi-turn follow the HF template", "[chat]") {
    const ChatTemplate t = chat_template_by_name("smolvlm");
    CHECK(t.render_user("hi", "Be brief.") ==
          "<|im_start|>System: Be brief.<end_of_utterance>\nUser: hi<end_of_utterance>\nAssistant:");
    CHECK(t.render({{"user", "hi"}, {"assistant", "hello"}, {"user", "<image>and this?"}}) ==
          "<|im_start|>User: hi<end_of_utterance>\nAssistant: hello<end_of_utterance>\nUser:<image>and this?"
          "<end_of_utterance>\nAssistant:");
    CHECK(t.render({{"user", "hi"}}, false) == "<|im_start|>User: hi<end_of_utterance>\n");
}

TEST_CASE("chat llava: GGUF template with its default system, and llama.cpp's vicuna", "[chat][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "llava-tiny";
    const auto prompts = glimpse::test::read_json(dir / "prompts.json");
    const std::string system = prompts["system"];

    const ChatTemplate t = from_gguf(dir / "llava-tiny-text-f16.gguf");
    CHECK(t.family == ChatFamily::Llava);
    CHECK(t.default_system == system);
    // Hugging Face processor prompts (ref-hf-e2e): the default system prompt, "USER: ... ASSISTANT:".
    const auto e2e = glimpse::test::read_json(dir / "ref-hf-e2e/result.json");
    for (const auto& ip : e2e["image_prompts"]) {
        const std::string u = with_marker(ip["user"].get<std::string>(), "<image>");
        CHECK(t.render_user(u) == ip["prompt"].get<std::string>());
    }

    // llama.cpp's built-in vicuna (the ref runs): text prompt without system, image prompts with it.
    ChatTemplate v = chat_template_by_name("vicuna");
    v.image_marker = "<__media__>";
    const auto ref = glimpse::test::read_json(dir / "ref/result.json");
    const auto& t0 = ref["text_prompts"][0];
    const std::string text = v.render_user(prompts["text_prompts"][0]["user"], "");
    CHECK(text == t0["prompt"].get<std::string>());
    for (size_t i = 0; i < ref["image_prompts"].size(); ++i)
        CHECK(v.render_user(prompts["image_prompts"][i]["user"], system) ==
              ref["image_prompts"][i]["prompt"].get<std::string>());
    const auto tok = load_tokenizer_gguf(GgufFile::open((dir / "llava-tiny-text-f16.gguf").string()));
    CHECK(tok->encode(text, true, true) == t0["tokens"].get<std::vector<int32_t>>());
}

TEST_CASE("chat llava, vicuna and chatml render turns and systems", "[chat]") {
    const ChatTemplate l = chat_template_by_name("llava");
    CHECK(l.render_user("hi") == "USER: hi ASSISTANT:");
    CHECK(l.render_user("hi", "Sys.") == "Sys. USER: hi ASSISTANT:");
    CHECK(l.render({{"user", "a"}, {"assistant", "b"}, {"user", "c"}}) == "USER: a ASSISTANT: b</s>USER: c ASSISTANT:");
    ChatTemplate ld = l;
    ld.default_system = "Default.";
    CHECK(ld.render_user("hi") == "Default. USER: hi ASSISTANT:");
    CHECK(ld.render_user("hi", "") == "USER: hi ASSISTANT:");  // an explicit empty system drops it

    const ChatTemplate v = chat_template_by_name("vicuna");
    CHECK(v.render({{"system", "S"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}}) ==
          "S\n\nUSER: a\nASSISTANT: b</s>\nUSER: c\nASSISTANT:");

    const ChatTemplate c = chat_template_by_name("ChatML");
    CHECK(c.render_user("hi", "S") ==
          "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");

    const ChatTemplate raw = chat_template_by_name("none");
    CHECK_THROWS_AS(raw.render_user("Once upon a time", "a system prompt"), Error);
    CHECK(raw.render_user("Once upon a time", "") == "Once upon a time");
    CHECK(raw.render_user("Once upon a time") == "Once upon a time");
}

TEST_CASE("chat template errors and recognition", "[chat]") {
    try {
        chat_template_by_name("jinja2");
        FAIL("accepted");
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::Usage);
        CHECK(std::string(e.what()).find("smolvlm, llava, vicuna, chatml, none") != std::string::npos);
    }
    const ChatTemplate t = chat_template_by_name("smolvlm");
    CHECK_THROWS_AS(t.render({{"user", "a"}, {"system", "late"}}), Error);
    CHECK_THROWS_AS(t.render({{"tool", "a"}}), Error);

    CHECK_FALSE(recognise_chat_template("{{ messages }}").has_value());
    CHECK_FALSE(recognise_chat_template("").has_value());
    const auto chatml = recognise_chat_template(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}");
    REQUIRE(chatml);
    CHECK(chatml->family == ChatFamily::ChatML);
    // llava-hf's chat_template.json: USER/ASSISTANT via .upper(), no default system.
    const auto hf = recognise_chat_template(
        "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
        "{% endif %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}");
    REQUIRE(hf);
    CHECK(hf->family == ChatFamily::Llava);
    CHECK(hf->default_system.empty());
}

TEST_CASE("chat template text from Hugging Face folders", "[chat]") {
    test::TempDir tmp;
    CHECK(hf_chat_template_text(tmp.path().string()).empty());
    test::write_file(tmp / "tokenizer_config.json",
                     std::string(R"({"chat_template": [{"name": "tool_use", "template": "x"},)"
                                 R"( {"name": "default", "template": "<|im_start|><|im_end|>"}]})"));
    CHECK(hf_chat_template_text(tmp.path().string()) == "<|im_start|><|im_end|>");
    test::write_file(tmp / "chat_template.json", std::string(R"({"chat_template": "Assistant:<end_of_utterance>"})"));
    CHECK(hf_chat_template_text(tmp.path().string()) == "Assistant:<end_of_utterance>");
    test::write_file(tmp / "chat_template.json", std::string("{not json"));
    CHECK_THROWS_AS(hf_chat_template_text(tmp.path().string()), Error);
}
