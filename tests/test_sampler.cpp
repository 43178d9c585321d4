// The sampler: greedy ties, seeded reproducibility, what top-k / top-p / min-p may return,
// the repetition penalty, the probabilities --show-probs prints, and stop strings.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/helpers.h"
#include "text/sampler.h"

using namespace glimpse;

namespace {

// Logits whose softmax (temperature 1) is exactly `probs`.
std::vector<float> logits_for(const std::vector<double>& probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back(float(std::log(p)));
    return l;
}

std::vector<int32_t> draws(const SamplerParams& p, const std::vector<float>& logits, int n) {
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(s.sample(logits.data(), int(logits.size())));
    return out;
}

SamplerParams with_temp(float t, uint64_t seed = 1) {
    SamplerParams p;
    p.temperature = t;
    p.seed = seed;
    return p;
}

}  // namespace

TEST_CASE("sampler greedy picks the largest logit, ties to the lowest id", "[sampler]") {
    const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
    CHECK(argmax(l.data(), 5) == 1);
    Sampler s(SamplerParams{});
    CHECK(s.sample(l.data(), 5) == 1);
    const std::vector<float> neg = {-3.0f, -2.0f, -2.0f};
    CHECK(argmax(neg.data(), 3) == 1);
}

TEST_CASE("sampler: same seed, same tokens; another seed, other tokens", "[sampler]") {
    const auto logits = test::random_floats(500, 3, 2.0f);
    const auto a = draws(with_temp(1.0f, 42), logits, 300);
    const auto b = draws(with_temp(1.0f, 42), logits, 300);
    const auto c = draws(with_temp(1.0f, 43), logits, 300);
    CHECK(a == b);
    CHECK(a != c);
    CHECK(std::set<int32_t>(a.begin(), a.end()).size() > 20);  // it does sample

    // reset() restarts the generator.
    Sampler s(with_temp(1.0f, 42));
    std::vector<int32_t> first, again;
    for (int i = 0; i < 50; ++i) first.push_back(s.sample(logits.data(), 500));
    s.reset();
    for (int i = 0; i < 50; ++i) again.push_back(s.sample(logits.data(), 500));
    CHECK(first == again);
}

TEST_CASE("sampler top-k 1 is greedy at any temperature", "[sampler]") {
    const auto logits = test::random_floats(1000, 9, 3.0f);
    SamplerParams p = with_temp(1.5f);
    p.top_k = 1;
    for (int32_t id : draws(p, logits, 50)) CHECK(id == argmax(logits.data(), 1000));
}

TEST_CASE("sampler frequencies follow softmax(logits / T)", "[sampler]") {
    const std::vector<double> probs = {0.5, 0.25, 0.15, 0.1};
    const auto logits = logits_for(probs);
    const float T = GENERATE(1.0f, 0.5f);
    // Expected distribution at temperature T: p_i^(1/T), renormalised.
    std::vector<double> want;
    double sum = 0;
    for (double p : probs) sum += std::pow(p, 1.0 / T);
    for (double p : probs) want.push_back(std::pow(p, 1.0 / T) / sum);
    const int n = 20000;
    std::map<int32_t, int> count;
    for (int32_t id : draws(with_temp(T, 5), logits, n)) count[id]++;
    for (int i = 0; i < 4; ++i) {
        INFO("T " << T << " token " << i);
        CHECK(std::fabs(count[i] / double(n) - want[size_t(i)]) < 0.015);
    }
}

TEST_CASE("sampler top-k, top-p and min-p keep only the allowed tokens", "[sampler]") {
    // probabilities 0.4 0.3 0.15 0.1 0.05, in shuffled id order
    const std::vector<double> probs = {0.1, 0.4, 0.05, 0.3, 0.15};
    const auto logits = logits_for(probs);
    std::map<int32_t, int> count;
    auto run = [&](const SamplerParams& p) {
        count.clear();
        for (int32_t id : draws(p, logits, 4000)) count[id]++;
    };
    SECTION("top-k 2: the two most likely") {
        SamplerParams p = with_temp(1.0f);
        p.top_k = 2;
        run(p);
        CHECK(count.size() == 2);
        CHECK(count.count(1) == 1);
        CHECK(count.count(3) == 1);
        // renormalised 0.4 : 0.3
        CHECK(std::fabs(count[1] / 4000.0 - 4.0 / 7.0) < 0.03);
    }
    SECTION("top-p 0.7: the smallest prefix with mass >= 0.7 is {0.4, 0.3}") {
        SamplerParams p = with_temp(1.0f);
        p.top_p = 0.7f;
        run(p);
        CHECK(count.size() == 2);
        CHECK(count.count(1) == 1);
        CHECK(count.count(3) == 1);
    }
    SECTION("top-p 0.71 needs the third token") {
        SamplerParams p = with_temp(1.0f);
        p.top_p = 0.71f;
        run(p);
        CHECK(count.size() == 3);
        CHECK(count.count(4) == 1);
    }
    SECTION("top-p tiny keeps the single best") {
        SamplerParams p = with_temp(1.0f);
        p.top_p = 0.01f;
        run(p);
        CHECK(count.size() == 1);
        CHECK(count.count(1) == 1);
    }
    SECTION("min-p 0.3: p >= 0.12 keeps 0.4, 0.3, 0.15") {
        SamplerParams p = with_temp(1.0f);
        p.min_p = 0.3f;
        run(p);
        CHECK(count.size() == 3);
        CHECK(count.count(0) == 0);
        CHECK(count.count(2) == 0);
    }
    SECTION("min-p 1: only the best") {
        SamplerParams p = with_temp(1.0f);
        p.min_p = 1.0f;
        run(p);
        CHECK(count.size() == 1);
    }
    SECTION("top-k 4 then top-p 0.8 after renormalising over the four") {
        SamplerParams p = with_temp(1.0f);
        p.top_k = 4;
        p.top_p = 0.8f;  // over {0.4,0.3,0.15,0.1}/0.95: 0.42, 0.74, 0.89 -> three kept
        run(p);
        CHECK(count.size() == 3);
    }
}

TEST_CASE("sampler repetition penalty lowers tokens already seen", "[sampler]") {
    std::vector<float> l = {2.0f, 1.9f, -1.0f, -1.1f};
    SamplerParams p;
    p.repeat_penalty = 1.5f;
    Sampler s(p);
    CHECK(s.sample(l.data(), 4) == 0);
    s.accept(0);  // 2.0 / 1.5 = 1.33 < 1.9
    CHECK(s.sample(l.data(), 4) == 1);
    s.accept(1);  // 1.9 / 1.5 = 1.27 < 1.33: token 0 again
    CHECK(s.sample(l.data(), 4) == 0);
    CHECK(l[0] == 2.0f);  // the caller's logits are untouched

    // Negative logits are multiplied (pushed further down).
    std::vector<float> neg = {-1.0f, -1.2f};
    Sampler n(p);
    n.accept(0);  // -1.0 * 1.5 = -1.5 < -1.2
    CHECK(n.sample(neg.data(), 2) == 1);

    // The window: with repeat_last_n 1 only the last id counts.
    SamplerParams w = p;
    w.repeat_last_n = 1;
    Sampler sw(w);
    sw.accept(0);
    sw.accept(3);
    CHECK(sw.sample(l.data(), 4) == 0);
    // Penalty 1 is off.
    Sampler off(SamplerParams{});
    off.accept(0);
    CHECK(off.sample(l.data(), 4) == 0);
}

TEST_CASE("sampler top_candidates are the softmax probabilities, best first", "[sampler]") {
    const std::vector<double> probs = {0.1, 0.4, 0.05, 0.3, 0.15};
    const auto logits = logits_for(probs);
    const auto top = top_candidates(logits.data(), 5, 3, 0.0f);
    REQUIRE(top.size() == 3);
    CHECK(top[0].id == 1);
    CHECK(top[1].id == 3);
    CHECK(top[2].id == 4);
    CHECK(top[0].prob == Approx(0.4).epsilon(1e-5));
    CHECK(top[2].prob == Approx(0.15).epsilon(1e-5));
    CHECK(top[0].logit == logits[1]);
    const auto hot = top_candidates(logits.data(), 5, 10, 2.0f);  // n > vocabulary: all of it
    REQUIRE(hot.size() == 5);
    double sum = 0;
    for (const auto& t : hot) sum += t.prob;
    CHECK(sum == Approx(1.0).epsilon(1e-5));
    CHECK(hot[0].prob < 0.4f);  // a higher temperature flattens
    const std::vector<float> tie = {1.0f, 3.0f, 3.0f};
    CHECK(top_candidates(tie.data(), 3, 1, 1.0f)[0].id == 1);
}

TEST_CASE("sampler parameters are validated", "[sampler]") {
    auto bad = [](SamplerParams p, const std::string& opt) {
        try {
            Sampler s(p);
            FAIL("accepted");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::Usage);
            CHECK(std::string(e.what()).find(opt) != std::string::npos);
        }
    };
    SamplerParams p;
    p.temperature = -1;
    bad(p, "--temp");
    p = {};
    p.top_p = 0;
    bad(p, "--top-p");
    p = {};
    p.min_p = 1.5f;
    bad(p, "--min-p");
    p = {};
    p.top_k = -2;
    bad(p, "--top-k");
    p = {};
    p.repeat_penalty = 0;
    bad(p, "--repeat-penalty");
    p = {};
    p.temperature = NAN;
    bad(p, "--temp");
}

TEST_CASE("sampler stop strings: held back while they may start, cut when they appear", "[sampler]") {
    SECTION("a stop string split over pieces") {
        StopStrings s({"\nUser:"});
        std::string out;
        out += s.feed("Hello");
        CHECK(out == "Hello");
        out += s.feed(" there\nUs");  // "\nUs" could begin the stop string
        CHECK(out == "Hello there");
        out += s.feed("er: more");
        CHECK(s.stopped());
        CHECK(out == "Hello there");
        CHECK(s.feed("ignored").empty());
        CHECK(s.flush().empty());
    }
    SECTION("a false start is released") {
        StopStrings s({"STOP"});
        std::string out = s.feed("ST");
        CHECK(out.empty());
        out += s.feed("ART");
        CHECK(out == "START");
        out += s.feed("S");
        out += s.flush();
        CHECK(out == "STARTS");
        CHECK_FALSE(s.stopped());
    }
    SECTION("the earliest of several, inside one piece") {
        StopStrings s({"cd", "b"});
        CHECK(s.feed("abcde") == "a");
        CHECK(s.stopped());
    }
    SECTION("no stop strings: everything passes at once") {
        StopStrings s({});
        CHECK(s.feed("abc") == "abc");
        CHECK(s.flush().empty());
    }
}
