#include "apps/default_model.h"

#include <filesystem>
#include <system_error>
#include <tuple>
#include <vector>

#include "core/error.h"

namespace glimpse::app {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> candidate_dirs() {
    std::vector<fs::path> dirs;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec && exe.has_parent_path()) {
        const fs::path bin = exe.parent_path();
        dirs.push_back(bin.parent_path() / "weights" / "tiny");
        dirs.push_back(bin.parent_path() / "share" / "glimpse" / "tiny");
        dirs.push_back(bin / "weights" / "tiny");
    }
#ifdef GLIMPSE_SOURCE_DIR
    dirs.push_back(fs::path(GLIMPSE_SOURCE_DIR) / "weights" / "tiny");
#endif
    return dirs;
}

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

}  // namespace

std::pair<std::string, std::string> default_model_files() {
    const std::vector<fs::path> dirs = candidate_dirs();
    std::string tried;
    for (const fs::path& d : dirs) {
        const fs::path text = d / kDefaultTextFile, mmproj = d / kDefaultMmprojFile;
        if (is_file(text) && is_file(mmproj)) return {text.string(), mmproj.string()};
        tried += (tried.empty() ? "" : ", ") + d.string();
    }
    throw Error(ErrorKind::Usage, std::string("no model given and the default model (") + kDefaultTextFile + " + " +
                                      kDefaultMmprojFile + ") was not found in " +
                                      (tried.empty() ? std::string("any known folder") : tried) +
                                      ": pass -m MODEL, or keep weights/tiny beside the glimpse binary's folder");
}

void use_default_model_if_unset(std::string& model, std::string& mmproj) {
    if (!model.empty()) return;
    if (!mmproj.empty()) throw Error(ErrorKind::Usage, "--mmproj needs -m (the default model has its own)");
    std::tie(model, mmproj) = default_model_files();
}

}  // namespace glimpse::app
