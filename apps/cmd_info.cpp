// `glimpse info FILE`: what is inside a weight file — its format, architecture, metadata and
// tensor table — for GGUF files, safetensors files, Hugging Face folders and llama2.c
// checkpoints. `--json` prints the same as one JSON document.
#include <cstdio>
#include <cstring>
#include <functional>
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/llama2c.h"
#include "weights/safetensors.h"

namespace glimpse::app {

namespace {

std::string human_bytes(uint64_t b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = double(b);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

std::string human_count(uint64_t n) {
    char buf[32];
    if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
    else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
    else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.1f K", n / 1e3);
    else std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
    return buf;
}

// How a format lists shapes: GGUF innermost first (ggml's ne), the others outermost first.
enum class ShapeOrder { Ggml, Outermost };

std::vector<int64_t> shape_of(const Tensor& t, ShapeOrder order) {
    std::vector<int64_t> s(t.ne.begin(), t.ne.begin() + t.n_dims);
    if (order == ShapeOrder::Outermost) std::reverse(s.begin(), s.end());
    return s;
}

std::string shape_text(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

// The tensor table and its totals, shared by every format.
struct TensorTable {
    const std::vector<Tensor>& tensors;
    ShapeOrder order;
    std::function<std::string(const Tensor&)> type_name;
    std::function<uint64_t(const Tensor&)> offset;  // file offset of the data; empty: not shown

    void print() const {
        size_t w = 4;
        for (const auto& t : tensors) w = std::max(w, t.name.size());
        uint64_t params = 0, bytes = 0;
        std::map<std::string, int> by_type;
        for (const auto& t : tensors) {
            params += uint64_t(t.numel());
            bytes += t.bytes();
            by_type[type_name(t)]++;
        }
        std::printf("\ntensors: %zu, %s parameters, %s", tensors.size(), human_count(params).c_str(),
                    human_bytes(bytes).c_str());
        std::string types;
        for (const auto& [k, v] : by_type) types += (types.empty() ? "" : ", ") + std::to_string(v) + " " + k;
        std::printf(" (%s)\n", types.c_str());
        std::printf("shapes are %s\n", order == ShapeOrder::Ggml ? "in ggml order: innermost (contiguous) axis first"
                                                                 : "as stored: outermost axis first");
        std::printf("  %-*s  %-5s  %-22s  %12s%s\n", int(w), "name", "type", "shape", "bytes", offset ? "        offset" : "");
        for (const auto& t : tensors) {
            std::printf("  %-*s  %-5s  %-22s  %12llu", int(w), t.name.c_str(), type_name(t).c_str(),
                        shape_text(shape_of(t, order)).c_str(), static_cast<unsigned long long>(t.bytes()));
            if (offset) std::printf("  %12llu", static_cast<unsigned long long>(offset(t)));
            std::printf("\n");
        }
    }

    nlohmann::json json() const {
        auto arr = nlohmann::json::array();
        for (const auto& t : tensors) {
            nlohmann::json row = {
                {"name", t.name}, {"type", type_name(t)}, {"shape", shape_of(t, order)}, {"bytes", t.bytes()}};
            if (offset) row["offset"] = offset(t);
            arr.push_back(std::move(row));
        }
        return arr;
    }
};

uint64_t offset_in(const MappedFile& f, const Tensor& t) {
    return uint64_t(static_cast<const uint8_t*>(t.data) - f.data());
}

std::string dtype_text(const Tensor& t) { return std::string(dtype_name(t.dtype)); }

int info_gguf(std::shared_ptr<const MappedFile> mapped, bool json) {
    const GgufFile f = GgufFile::parse(mapped);
    const std::string arch = f.str_or("general.architecture", "");
    TensorTable table{f.tensors(), ShapeOrder::Ggml, dtype_text,
                      [&](const Tensor& t) { return offset_in(*mapped, t); }};
    if (json) {
        nlohmann::json meta = nlohmann::json::object();
        for (const auto& kv : f.metadata()) meta[kv.key] = gguf::value_to_json(kv.value, 64);
        nlohmann::json out = {{"path", f.path()},       {"format", "gguf"},
                              {"version", f.version()}, {"alignment", f.alignment()},
                              {"architecture", arch},   {"file_bytes", f.file_size()},
                              {"metadata", meta},       {"tensors", table.json()}};
        std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    std::printf("%s: GGUF v%u, %s, alignment %llu\n", f.path().c_str(), f.version(), human_bytes(f.file_size()).c_str(),
                static_cast<unsigned long long>(f.alignment()));
    std::printf("architecture: %s", arch.empty() ? "(not set)" : arch.c_str());
    if (f.has("clip.projector_type")) std::printf(", projector %s", f.str("clip.projector_type").c_str());
    if (f.has("general.name")) std::printf(", name %s", gguf::format_value(*f.find("general.name")).c_str());
    std::printf("\n\nmetadata: %zu keys\n", f.metadata().size());
    size_t w = 0;
    for (const auto& kv : f.metadata()) w = std::max(w, kv.key.size());
    for (const auto& kv : f.metadata())
        std::printf("  %-*s  %-13s  %s\n", int(w), kv.key.c_str(), gguf::type_description(kv.value).c_str(),
                    gguf::format_value(kv.value).c_str());
    table.print();
    return 0;
}

int info_safetensors(std::shared_ptr<const MappedFile> mapped, bool json) {
    const SafetensorsFile f = SafetensorsFile::parse(mapped);
    auto st_type = [](const Tensor& t) { return std::string(safetensors_dtype_name(t.dtype)); };
    TensorTable table{f.tensors(), ShapeOrder::Outermost, st_type,
                      [&](const Tensor& t) { return offset_in(*mapped, t); }};
    if (json) {
        nlohmann::json out = {{"path", f.path()},         {"format", "safetensors"},
                              {"header_bytes", f.header_bytes()}, {"file_bytes", mapped->size()},
                              {"metadata", f.metadata()}, {"tensors", table.json()}};
        std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    std::printf("%s: safetensors, %s, JSON header %s\n", f.path().c_str(), human_bytes(mapped->size()).c_str(),
                human_bytes(f.header_bytes()).c_str());
    if (!f.metadata().empty()) {
        std::printf("\nmetadata: %zu keys\n", f.metadata().size());
        for (const auto& [k, v] : f.metadata()) std::printf("  %s = %s\n", k.c_str(), message_safe(v).c_str());
    }
    table.print();
    return 0;
}

// The config.json entries that say what a model is, top level and in text/vision sub-configs.
void print_config_summary(const nlohmann::json& config) {
    static const char* keys[] = {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                                 "num_attention_heads", "num_key_value_heads", "vocab_size",
                                 "max_position_embeddings", "rope_theta", "rms_norm_eps", "image_size",
                                 "patch_size", "scale_factor", "tie_word_embeddings", "torch_dtype"};
    auto show = [&](const nlohmann::json& c, const std::string& prefix) {
        for (const char* k : keys)
            if (c.contains(k)) std::printf("  %s%s = %s\n", prefix.c_str(), k, c[k].dump().c_str());
    };
    show(config, "");
    for (const char* sub : {"text_config", "vision_config"})
        if (config.contains(sub) && config[sub].is_object()) show(config[sub], std::string(sub) + ".");
}

int info_hf(const std::string& dir, bool json) {
    const HfFolder f = HfFolder::open(dir);
    auto st_type = [](const Tensor& t) { return std::string(safetensors_dtype_name(t.dtype)); };
    // A folder's tensors live in several shard files, so the table has no offset column.
    TensorTable table{f.tensors(), ShapeOrder::Outermost, st_type, nullptr};
    if (json) {
        nlohmann::json out = {{"path", f.dir()},
                              {"format", "huggingface"},
                              {"architecture", f.architecture()},
                              {"model_type", f.model_type()},
                              {"shards", f.shard_files()},
                              {"tokenizer_json", f.has_tokenizer_json()},
                              {"config", f.config()},
                              {"tensors", table.json()}};
        std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    std::printf("%s: Hugging Face folder, %zu safetensors shard%s%s\n", f.dir().c_str(), f.shard_files().size(),
                f.shard_files().size() == 1 ? "" : "s", f.has_tokenizer_json() ? ", tokenizer.json" : "");
    std::printf("architecture: %s\n\nconfig.json:\n",
                f.architecture().empty() ? "(not set)" : f.architecture().c_str());
    print_config_summary(f.config());
    table.print();
    return 0;
}

int info_llama2c(std::shared_ptr<const MappedFile> mapped, bool json) {
    const Llama2cCheckpoint f = Llama2cCheckpoint::parse_memory(mapped->data(), mapped->size(), mapped->path());
    const Llama2cConfig& c = f.config();
    TensorTable table{f.tensors(), ShapeOrder::Outermost, dtype_text,
                      [&](const Tensor& t) { return offset_in(*mapped, t); }};
    const nlohmann::json cfg = {{"dim", c.dim},           {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers},
                                {"n_heads", c.n_heads},   {"n_kv_heads", c.n_kv_heads}, {"vocab_size", c.vocab_size},
                                {"seq_len", c.seq_len},   {"shared_classifier", c.shared_classifier}};
    if (json) {
        nlohmann::json out = {{"path", f.path()},  {"format", "llama2c"}, {"file_bytes", mapped->size()},
                              {"config", cfg},     {"tensors", table.json()}};
        std::printf("%s\n", out.dump(2).c_str());
        return 0;
    }
    std::printf("%s: llama2.c checkpoint, %s\narchitecture: llama (llama2.c)\n\nconfig:\n", f.path().c_str(),
                human_bytes(mapped->size()).c_str());
    for (auto it = cfg.begin(); it != cfg.end(); ++it) std::printf("  %s = %s\n", it.key().c_str(), it.value().dump().c_str());
    table.print();
    return 0;
}

bool starts_like_safetensors(const MappedFile& f) {
    if (f.size() < 9) return false;
    uint64_t n;
    std::memcpy(&n, f.data(), 8);
    return n >= 2 && n <= f.size() - 8 && f.data()[8] == '{';
}

}  // namespace

int run_info(const std::string& path, bool json) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        if (!HfFolder::looks_like(path))
            throw input_error(path, "is a folder without config.json (expected a Hugging Face model folder)");
        return info_hf(path, json);
    }
    auto mapped = MappedFile::open(path);
    if (mapped->size() >= 4 && std::memcmp(mapped->data(), "GGUF", 4) == 0) return info_gguf(mapped, json);
    if (starts_like_safetensors(*mapped)) return info_safetensors(mapped, json);
    if (Llama2cCheckpoint::looks_like(path)) return info_llama2c(mapped, json);
    throw model_error(path, "unrecognised weight file (expected GGUF, safetensors, a llama2.c checkpoint or a "
                            "Hugging Face folder)");
}

Command add_info(CLI::App& app) {
    auto* sub = app.add_subcommand("info", "Show what is inside a weight file: format, architecture, metadata, tensors");
    sub->footer(
        "FILE may be a GGUF file (a text model or an mmproj vision file), a .safetensors file,\n"
        "a Hugging Face model folder (config.json + safetensors), or a llama2.c checkpoint.\n"
        "Example: glimpse info ../shared/golden/smolvlm-tiny/smolvlm-tiny-text-q8_0.gguf");
    auto path = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    sub->add_option("FILE", *path, "weight file or model folder")->required();
    sub->add_flag("--json", *json, "print one JSON document instead of tables");
    return {sub, [path, json] { return run_info(*path, *json); }};
}

}  // namespace glimpse::app
