#include "apps/caption_inputs.h"

#include <glob.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace glimpse::app {

namespace {

namespace fs = std::filesystem;

bool is_pattern(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

// Every image file under `dir`, sorted. Unreadable subfolders are skipped, not fatal.
std::vector<std::string> images_under(const fs::path& dir, std::string& error) {
    std::vector<std::string> found;
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) {
        error = dir.string() + ": cannot read folder (" + ec.message() + ")";
        return found;
    }
    for (; it != end; it.increment(ec)) {
        if (ec) break;
        std::error_code fec;
        if (it->is_regular_file(fec) && has_image_extension(it->path().string())) found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    return found;
}

std::vector<std::string> glob_matches(const std::string& pattern) {
    std::vector<std::string> out;
    glob_t g{};
    if (glob(pattern.c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
    globfree(&g);
    std::sort(out.begin(), out.end());
    return out;
}

class Expander {
public:
    std::vector<CaptionInput> out;

    void add(const std::string& arg, bool allow_list) {
        if (allow_list && arg.size() > 1 && arg[0] == '@') return add_list(arg.substr(1));
        std::error_code ec;
        if (fs::is_directory(arg, ec)) {
            std::string err;
            const auto files = images_under(arg, err);
            if (!err.empty()) push({arg, err});
            for (const auto& f : files) push({f, ""});
            return;
        }
        if (is_pattern(arg) && !fs::exists(arg, ec)) {
            const auto matches = glob_matches(arg);
            if (matches.empty()) push({arg, arg + ": no file matches this pattern"});
            for (const auto& m : matches) {
                if (fs::is_directory(m, ec)) add(m, false);
                else push({m, ""});
            }
            return;
        }
        push({arg, ""});  // a missing or bad file is reported when it is read
    }

private:
    std::unordered_set<std::string> seen_;

    void push(CaptionInput in) {
        if (seen_.insert(in.path).second) out.push_back(std::move(in));
    }

    void add_list(const std::string& list) {
        std::ifstream f(list);
        if (!f) return push({"@" + list, list + ": cannot read the list file"});
        std::string line;
        while (std::getline(f, line)) {
            while (!line.empty() && (line.back() == '\r' || std::isspace(static_cast<unsigned char>(line.back()))))
                line.pop_back();
            size_t start = 0;
            while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
            line.erase(0, start);
            if (line.empty() || line[0] == '#') continue;
            add(line, false);
        }
    }
};

}  // namespace

bool has_image_extension(const std::string& path) {
    std::string ext = fs::path(path).extension().string();
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    static const char* const kExts[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"};
    return std::any_of(std::begin(kExts), std::end(kExts), [&](const char* e) { return ext == e; });
}

std::vector<CaptionInput> expand_caption_inputs(const std::vector<std::string>& args) {
    Expander e;
    for (const auto& a : args) e.add(a, true);
    return std::move(e.out);
}

uint32_t shard_of(const std::string& path, uint32_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : path) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return n ? uint32_t(h % n) : 0;
}

void parse_shard(const std::string& spec, uint32_t& index, uint32_t& count) {
    const size_t slash = spec.find('/');
    auto bad = [&]() {
        return Error(ErrorKind::Usage, "--shard " + spec + ": expected I/N with 0 <= I < N (e.g. --shard 0/4)");
    };
    if (slash == std::string::npos || slash == 0 || slash + 1 == spec.size()) throw bad();
    const std::string a = spec.substr(0, slash), b = spec.substr(slash + 1);
    auto digits = [](const std::string& s) {
        return s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (!digits(a) || !digits(b)) throw bad();
    index = uint32_t(std::stoul(a));
    count = uint32_t(std::stoul(b));
    if (count == 0 || index >= count) throw bad();
}

std::set<std::string> read_done_files(const std::string& out_path) {
    std::set<std::string> done;
    std::error_code ec;
    if (!fs::exists(out_path, ec)) return done;
    std::ifstream f(out_path, std::ios::binary);
    if (!f) throw input_error(out_path, "cannot read the output file to resume from it");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    f.close();

    const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (complete < text.size()) {
        // A torn last line: a run was killed while writing it. Its image is captioned again.
        fs::resize_file(out_path, complete, ec);
        if (ec) throw input_error(out_path, "cannot cut off the incomplete last line (" + ec.message() + ")");
    }
    size_t start = 0;
    while (start < complete) {
        const size_t end = text.find('\n', start);
        const std::string line = text.substr(start, end - start);
        start = end + 1;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("file") && j["file"].is_string()) done.insert(j["file"].get<std::string>());
    }
    return done;
}

}  // namespace glimpse::app
