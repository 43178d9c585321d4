// `glimpse ask` through the binary with piped stdin, on the golden models: the first answer
// is the Hugging Face reference's greedy text, a second turn that reuses the KV cache answers
// exactly as a run that re-evaluates the whole conversation from scratch, an image seen
// before is not encoded again, /save then /load in a new process continues with identical
// next-token probabilities, and bad files and a full context are reported without a crash.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"

using namespace glimpse;
using test::shell_quote;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return shell_quote(p.string()); }

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Runs `glimpse ask ARGS` with `input` on stdin.
test::RunResult ask(const std::string& args, const std::string& input) {
    test::TempDir tmp;
    test::write_file(tmp / "in", input);
    const std::string cmd = shell_quote(GLIMPSE_BINARY) + " ask " + args + " <" + q(tmp / "in") + " >" + q(tmp / "out") +
                            " 2>" + q(tmp / "err");
    const int status = std::system(cmd.c_str());
    test::RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    r.out = slurp(tmp / "out");
    r.err = slurp(tmp / "err");
    return r;
}

std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(prefix, 0) == 0) out.push_back(line);
    return out;
}

struct Smol {
    fs::path dir;
    std::string base, model;  // the model flags; the same with -n 16
    nlohmann::json ref;
    explicit Smol(const fs::path& golden)
        : dir(golden / "smolvlm-tiny"),
          base(" -m " + q(dir / "smolvlm-tiny-text-f32.gguf") + " --mmproj " + q(dir / "mmproj-smolvlm-tiny-f32.gguf") + " -t 2"),
          model(base + " -n 16"),
          ref(nlohmann::json::parse(slurp(dir / "ref-hf-e2e" / "result.json"))["image_prompts"][0]) {}
    std::string image() const { return q(dir / "images" / ref["image"].get<std::string>()); }
};

}  // namespace

TEST_CASE("ask CLI: first answer is the reference; cached turns equal a fresh run", "[ask][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const Smol s(golden);
    const std::string input = "Describe this image.\nWhat colors do you see?\nAnd the shapes?\n";
    const auto cached = ask(s.image() + s.model + " -v", input);
    INFO(cached.err);
    REQUIRE(cached.exit_code == 0);
    // (Answers of a random-weight model may hold newlines: compare whole outputs, not lines.)
    CHECK(cached.out.rfind(s.ref["greedy"]["text"].get<std::string>() + "\n", 0) == 0);

    // The whole conversation evaluated from position 0 at every turn gives the same answers.
    const auto fresh = ask(s.image() + s.model + " -v --no-cache", input);
    REQUIRE(fresh.exit_code == 0);
    CHECK(fresh.out == cached.out);
    // ...while the cached run evaluated only each new turn.
    const auto turns_cached = lines_starting(cached.err, "turn "), turns_fresh = lines_starting(fresh.err, "turn ");
    REQUIRE(turns_cached.size() == 3);
    REQUIRE(turns_fresh.size() == 3);
    auto positions = [](const std::string& line) { return std::stoi(line.substr(line.find('(') + 1)); };
    CHECK(positions(turns_cached[2]) < 30);
    // The fresh run evaluates the first prompt (with the image) again.
    CHECK(positions(turns_fresh[2]) > positions(turns_cached[2]) + s.ref["n_tokens"].get<int>());
}

TEST_CASE("ask CLI: an image seen before is not encoded again", "[ask][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const Smol s(golden);
    test::TempDir tmp;
    fs::copy_file(s.dir / "images" / "shapes_64x64.png", tmp / "copy.png");  // same bytes, other name
    const auto r = ask(s.image() + s.base + " -n 2 -v",
                       "What is it?\n/image " + (tmp / "copy.png").string() + "\nAnd this one?\n/reset\n/image " +
                           (s.dir / "images" / "shapes_64x64.png").string() + "\nAgain?\n");
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(lines_starting(r.err, "turn ").size() == 3);
    CHECK(lines_starting(r.err, "image ").size() == 3);
    CHECK(r.err.find("encode") != std::string::npos);
    CHECK(lines_starting(r.err, "image " + (tmp / "copy.png").string() + ": cached").size() == 1);
    CHECK(lines_starting(r.err, "image " + (s.dir / "images" / "shapes_64x64.png").string() + ": cached").size() == 1);
}

TEST_CASE("ask CLI: /save then /load in a new process continues identically", "[ask][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const Smol s(golden);
    test::TempDir tmp;
    const std::string saved = (tmp / "chat.glimpse").string();
    const auto a = ask(s.image() + s.model + " --show-probs 3",
                       "Describe this image.\n/save " + saved + "\nWhat colors do you see?\n");
    INFO(a.err);
    REQUIRE(a.exit_code == 0);
    const auto b = ask(s.model + " --show-probs 3", "/load " + saved + "\nWhat colors do you see?\n");
    INFO(b.err);
    REQUIRE(b.exit_code == 0);
    CHECK(a.out == s.ref["greedy"]["text"].get<std::string>() + "\n" + b.out);
    // The next-token probabilities of every step of the continued turn are the same.
    const auto steps_a = lines_starting(a.err, "[step"), steps_b = lines_starting(b.err, "[step");
    REQUIRE(!steps_b.empty());
    REQUIRE(steps_a.size() > steps_b.size());
    CHECK(std::vector<std::string>(steps_a.end() - long(steps_b.size()), steps_a.end()) == steps_b);

    // Another model's conversation, a damaged file and a file that is not one are refused.
    const fs::path llava = golden / "llava-tiny" / "llava-tiny-text-f16.gguf";
    auto r = ask(" -m " + q(llava) + " -n 2", "/load " + saved + "\n");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("saved with another model") != std::string::npos);
    const std::string bytes = slurp(saved);
    test::write_file(tmp / "torn.glimpse", bytes.substr(0, bytes.size() / 2));
    r = ask(s.model, "/load " + (tmp / "torn.glimpse").string() + "\n");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("damaged conversation file") != std::string::npos);
    r = ask(s.model, "/load " + (s.dir / "images" / "shapes_64x64.png").string() + "\n/bogus\n");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("not a glimpse conversation file") != std::string::npos);
    CHECK(r.err.find("unknown command /bogus") != std::string::npos);
}

TEST_CASE("ask CLI: a full context is reported, /reset recovers", "[ask][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path llava = golden / "llava-tiny" / "llava-tiny-text-f16.gguf";
    std::string input;
    for (int i = 0; i < 8; ++i) input += "Tell me more about it, please.\n";
    input += "/reset\nHello?\n";
    const auto r = ask(" -m " + q(llava) + " -n 8 --ctx 64 -t 2 -v", input);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("the context is full") != std::string::npos);
    CHECK(r.err.find("/reset") != std::string::npos);
    const auto turns = lines_starting(r.err, "turn ");
    CHECK(turns.size() >= 2);  // the questions that fitted, then the one after /reset
    CHECK(turns.size() < 9);
    REQUIRE(!turns.empty());
    CHECK(turns.back().rfind("turn 1:", 0) == 0);

    // With no -m: the embedded default model, as describe; --mmproj alone is a usage error.
    const std::string scene = q(std::string(GLIMPSE_SOURCE_DIR) + "/examples/scene_1.png");
    const auto u = ask(scene + " -n 8", "What is in the picture?\n");
    CHECK(u.exit_code == 0);
    CHECK(!u.out.empty());
    const auto m = ask("--mmproj x.gguf " + scene, "hi\n");
    CHECK(m.exit_code == 1);
    CHECK(m.err.find("--mmproj needs -m") != std::string::npos);
}
