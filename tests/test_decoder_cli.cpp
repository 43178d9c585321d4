// `glimpse generate` end to end through the binary: stdout is exactly the generated text,
// errors are one line with the right exit code.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"

using namespace glimpse;
using test::run_glimpse;
using test::shell_quote;
namespace fs = std::filesystem;


TEST_CASE("generate CLI: stories260K greedy story on stdout, nothing else", "[decoder][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "stories260k";
    const auto expected = glimpse::test::read_json(dir / "expected.json");
    const std::string want = expected["prompts"]["Once upon a time"].get<std::string>();
    const std::string model = shell_quote((dir / "stories260K.bin").string());
    // 256 positions in all (expected.json "steps"): 5 prompt tokens, 252 generated.
    const auto r = run_glimpse("generate -m " + model + " -p 'Once upon a time' -n 252 -t 1");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK("Once upon a time" + r.out == want + "\n");
    // -v and --show-probs write to stderr only.
    const auto v = run_glimpse("generate -m " + model + " -p 'Once upon a time' -n 20 -t 1 -v --show-probs 2");
    REQUIRE(v.exit_code == 0);
    std::string head = v.out;
    if (!head.empty() && head.back() == '\n') head.pop_back();
    CHECK(r.out.compare(0, head.size(), head) == 0);
    CHECK(v.err.find("tokens/s") != std::string::npos);
    CHECK(v.err.find("[step 20]") != std::string::npos);
}

TEST_CASE("generate CLI: smolvlm-tiny with its chat template reproduces the greedy run", "[decoder][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const fs::path dir = golden / "smolvlm-tiny";
    const auto ref = glimpse::test::read_json(dir / "ref/result.json");
    const std::string model = shell_quote((dir / "smolvlm-tiny-text-f32.gguf").string());
    const auto r = run_glimpse("generate -m " + model + " -p 'What is the capital of France?' -n 16 -t 1");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == ref["text_prompts"][0]["greedy"]["text"].get<std::string>() + "\n");

    const auto j = run_glimpse("generate -m " + model + " -p 'What is the capital of France?' -n 16 -t 1 --json");
    REQUIRE(j.exit_code == 0);
    const auto doc = nlohmann::json::parse(j.out);
    CHECK(doc["tokens"] == ref["text_prompts"][0]["greedy"]["tokens"]);
    CHECK(doc["prompt_tokens"] == 14);

    // Seeded sampling is reproducible.
    const std::string sampled = "generate -m " + model + " -p hi -n 12 -t 1 --temp 1 --top-k 40 --seed 7";
    const auto s1 = run_glimpse(sampled), s2 = run_glimpse(sampled);
    REQUIRE(s1.exit_code == 0);
    CHECK(s1.out == s2.out);
}

TEST_CASE("generate CLI: errors are one line with the right exit code", "[decoder][cli][golden]") {
    GOLDEN_OR_SKIP(golden);
    const std::string smol = shell_quote((golden / "smolvlm-tiny/smolvlm-tiny-text-f32.gguf").string());
    auto one_line = [](const test::RunResult& r) {
        CHECK(r.out.empty());
        CHECK(r.err.find('\n') == r.err.size() - 1);
    };
    const auto too_long = run_glimpse("generate -m " + smol + " -p 'What is the capital of France?' --ctx 8");
    CHECK(too_long.exit_code == 1);
    CHECK(too_long.err.find("14 tokens") != std::string::npos);
    CHECK(too_long.err.find("context of 8 tokens") != std::string::npos);
    one_line(too_long);

    const auto missing = run_glimpse("generate -m /nonexistent/model.gguf -p hi");
    CHECK(missing.exit_code == 2);
    one_line(missing);

    const auto mmproj = run_glimpse("generate -m " + shell_quote((golden / "smolvlm-tiny/mmproj-smolvlm-tiny-f32.gguf").string()) +
                                    " -p hi");
    CHECK(mmproj.exit_code == 3);
    CHECK(mmproj.err.find("general.architecture") != std::string::npos);
    one_line(mmproj);

    const auto sys = run_glimpse("generate -m " + shell_quote((golden / "stories260k/stories260K.bin").string()) +
                                 " -p hi --system 'be nice'");
    CHECK(sys.exit_code == 1);
    one_line(sys);

    const auto bad_temp = run_glimpse("generate -m " + smol + " -p hi --temp -1");
    CHECK(bad_temp.exit_code == 1);
}
