// Shared test helpers: where the golden data is, temporary files, running the glimpse binary,
// and the tolerance rule used by every parity test.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace glimpse::test {

// ../shared/golden beside the checkout, or $GLIMPSE_GOLDEN. Empty if absent (tests that
// need it then WARN loudly and return: see GOLDEN_OR_SKIP).
std::filesystem::path golden_dir();

#define GOLDEN_OR_SKIP(dir)                                                                 \
    const std::filesystem::path dir = ::glimpse::test::golden_dir();                        \
    if (dir.empty()) {                                                                      \
        WARN("SKIPPED: golden data not found (set GLIMPSE_GOLDEN or check ../shared/golden)"); \
        return;                                                                             \
    }

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

void write_file(const std::filesystem::path& p, const std::vector<uint8_t>& bytes);
void write_file(const std::filesystem::path& p, const std::string& text);
std::vector<uint8_t> read_file(const std::filesystem::path& p);
// A whole JSON file (the golden manifests and references); throws on a missing or bad file.
nlohmann::json read_json(const std::filesystem::path& p);
// A raw little-endian float32 file (the golden tensors).
std::vector<float> read_floats(const std::filesystem::path& p);

// Runs the built `glimpse` binary with the given argument string (shell-quoted by the
// caller), capturing stdout and stderr separately; returns the exit code.
struct RunResult {
    int exit_code = -1;
    std::string out, err;
};
RunResult run_glimpse(const std::string& args);
// Sets an environment variable for the commands a test runs, unset however the test ends.
struct ScopedEnv {
    const char* name;
    ScopedEnv(const char* n, const char* v) : name(n) { ::setenv(n, v, 1); }
    ~ScopedEnv() { ::unsetenv(name); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
};
std::string shell_quote(const std::string& s);

// llm.c's rule: |got - ref| <= abs_tol + rel_tol * |ref|.
inline bool close_enough(float got, float ref, float abs_tol, float rel_tol) {
    if (std::isnan(ref)) return std::isnan(got);
    return std::fabs(got - ref) <= abs_tol + rel_tol * std::fabs(ref);
}

// Deterministic pseudo-random floats in [-scale, scale) (xorshift; same seed, same values).
std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f);

}  // namespace glimpse::test
