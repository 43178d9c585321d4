#include "tests/helpers.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace glimpse::test {

namespace fs = std::filesystem;

fs::path golden_dir() {
    if (const char* env = std::getenv("GLIMPSE_GOLDEN"); env && *env) {
        fs::path p(env);
        return fs::is_directory(p) ? p : fs::path();
    }
    fs::path p = fs::path(GLIMPSE_SOURCE_DIR) / ".." / "shared" / "golden";
    return fs::is_directory(p) ? fs::canonical(p) : fs::path();
}

TempDir::TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("glimpse-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw std::runtime_error("cannot write " + p.string());
}

void write_file(const fs::path& p, const std::string& text) {
    write_file(p, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<uint8_t> read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + p.string());
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

nlohmann::json read_json(const fs::path& p) {
    const std::vector<uint8_t> bytes = read_file(p);
    return nlohmann::json::parse(bytes.begin(), bytes.end());
}

std::vector<float> read_floats(const fs::path& p) {
    const std::vector<uint8_t> bytes = read_file(p);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') q += "'\\''";
        else q += c;
    }
    return q + "'";
}

RunResult run_glimpse(const std::string& args) {
    TempDir tmp;
    const fs::path out = tmp / "out", err = tmp / "err";
    const std::string cmd = shell_quote(GLIMPSE_BINARY) + " " + args + " >" + shell_quote(out.string()) +
                            " 2>" + shell_quote(err.string()) + " </dev/null";
    const int status = std::system(cmd.c_str());
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    auto slurp = [](const fs::path& p) {
        std::ifstream f(p);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    };
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

std::vector<float> random_floats(size_t n, uint64_t seed, float scale) {
    std::vector<float> v(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x = (static_cast<float>(s >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f) * scale;
    }
    return v;
}

}  // namespace glimpse::test
