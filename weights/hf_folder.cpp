#include "weights/hf_folder.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "weights/safetensors.h"

namespace glimpse {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kConfig = "config.json";
constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";
constexpr int kMaxJsonFileDepth = 64;
constexpr uint64_t kMaxConfigBytes = 16ull << 20;
struct JsonTooDeep {};

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);  // follows symlinks (Hub cache snapshots)
}

std::string join(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

// A shard name must stay inside the folder: a plain file name, nothing that walks out.
bool plain_file_name(const std::string& s) {
    if (s.empty() || s == "." || s == "..") return false;
    return s.find_first_of(std::string("/\\\0", 3)) == std::string::npos && s.find("..") == std::string::npos;
}

// weight_map of the index: tensor name -> shard file name, validated.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
    const json index = read_json_file(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw model_error(index_path, "no \"weight_map\" object (expected {\"weight_map\": {tensor: file}})");
    std::map<std::string, std::string> map;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
        if (!file.is_string())
            throw model_error(index_path, "weight_map entry \"" + message_safe(tensor) + "\" is not a file name string");
        const auto& name = file.get_ref<const std::string&>();
        if (!plain_file_name(name))
            throw model_error(index_path, "weight_map names the shard \"" + message_safe(name) + "\" for tensor \"" +
                                              message_safe(tensor) + "\" (shards must be plain file names in the folder)");
        map.emplace(tensor, name);
    }
    if (map.empty()) throw model_error(index_path, "weight_map is empty (no tensors listed)");
    return map;
}

}  // namespace

json read_json_file(const std::string& path, uint64_t max_bytes) {
    const auto file = MappedFile::open(path);
    if (file->size() > max_bytes)
        throw model_error(path, "is " + std::to_string(file->size()) + " bytes, over the " +
                                    std::to_string(max_bytes) + "-byte limit for a JSON file");
    const char* begin = reinterpret_cast<const char*>(file->data());
    // Real config/index/tokenizer files nest a handful of levels; a hostile "[[[[..." would
    // otherwise build a DOM tens of bytes per input byte deep.
    auto limit_depth = [](int depth, json::parse_event_t ev, json&) {
        if ((ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start) &&
            depth > kMaxJsonFileDepth)
            throw JsonTooDeep{};
        return true;
    };
    try {
        return json::parse(begin, begin + file->size(), limit_depth);
    } catch (const json::parse_error& e) {
        throw model_error(path, "invalid JSON (error at byte " + std::to_string(e.byte) + ")");
    } catch (const json::exception& e) {
        throw model_error(path, "JSON cannot be read: " + message_safe(e.what()));
    } catch (const JsonTooDeep&) {
        throw model_error(path, "JSON is nested more than " + std::to_string(kMaxJsonFileDepth) +
                                    " levels deep (corrupt file)");
    }
}

bool HfFolder::looks_like(const std::string& path) {
    std::error_code ec;
    return fs::is_directory(path, ec) && is_file(fs::path(path) / kConfig);
}

HfFolder HfFolder::open(const std::string& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) throw input_error(dir, "no such folder");
    if (!fs::is_directory(dir, ec)) throw input_error(dir, "is not a folder (expected a Hugging Face model folder)");
    HfFolder f;
    f.dir_ = dir;
    const std::string config_path = join(dir, kConfig);
    if (!is_file(config_path))
        throw model_error(config_path, "missing (a Hugging Face model folder needs config.json)");
    json config = read_json_file(config_path, kMaxConfigBytes);
    if (!config.is_object()) throw model_error(config_path, "is not a JSON object");
    f.config_ = std::make_shared<const json>(std::move(config));

    // tensor name -> shard file name, from the index (empty for a single file)
    std::map<std::string, std::string> weight_map;
    std::vector<std::string> shard_names;
    const std::string index_path = join(dir, kIndex);
    if (is_file(join(dir, kSingle))) {
        shard_names.push_back(kSingle);
    } else if (is_file(index_path)) {
        weight_map = read_weight_map(index_path);
        std::set<std::string> unique;
        for (const auto& [tensor, file] : weight_map) unique.insert(file);
        shard_names.assign(unique.begin(), unique.end());
        for (const auto& name : shard_names)
            if (!is_file(join(dir, name)))
                throw model_error(index_path, "shard \"" + message_safe(name) + "\" named in weight_map is missing");
    } else {
        throw model_error(dir, std::string("no ") + kSingle + " or " + kIndex +
                                   " (only safetensors weights are supported, not pytorch .bin)");
    }

    // tensor name -> shard it was found in, to refuse duplicates and check the index
    std::map<std::string_view, const std::string*> found_in;
    std::vector<SafetensorsFile> shards;
    shards.reserve(shard_names.size());
    for (const auto& name : shard_names) {
        f.shard_files_.push_back(join(dir, name));
        shards.push_back(SafetensorsFile::open(f.shard_files_.back()));
        for (const Tensor& t : shards.back().tensors()) {
            const auto [it, fresh] = found_in.emplace(t.name, &name);
            if (!fresh)
                throw model_error(f.shard_files_.back(), "tensor \"" + message_safe(t.name) + "\" is also in " +
                                                             message_safe(*it->second) +
                                                             " (a tensor must be in exactly one shard)");
        }
    }
    for (const auto& [tensor, file] : weight_map) {
        const auto it = found_in.find(tensor);
        if (it == found_in.end() || *it->second != file)
            throw model_error(index_path, "tensor \"" + message_safe(tensor) + "\" is listed in shard \"" +
                                              message_safe(file) + "\" but that shard does not contain it");
    }
    for (const auto& s : shards) f.tensors_.insert(f.tensors_.end(), s.tensors().begin(), s.tensors().end());
    std::sort(f.tensors_.begin(), f.tensors_.end(), [](const Tensor& a, const Tensor& b) { return a.name < b.name; });
    return f;
}

std::string HfFolder::architecture() const {
    const auto it = config_->find("architectures");
    if (it == config_->end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return "";
    return (*it)[0].get<std::string>();
}

std::string HfFolder::model_type() const {
    const auto it = config_->find("model_type");
    if (it == config_->end() || !it->is_string()) return "";
    return it->get<std::string>();
}

const Tensor* HfFolder::find_tensor(std::string_view name) const {
    const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                     [](const Tensor& t, std::string_view n) { return t.name < n; });
    return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const Tensor& HfFolder::tensor(std::string_view name) const {
    if (const Tensor* t = find_tensor(name)) return *t;
    throw model_error(dir_, "no tensor named \"" + message_safe(name) + "\" in the model's safetensors");
}

bool HfFolder::has_tokenizer_json() const { return is_file(tokenizer_json_path()); }

std::string HfFolder::tokenizer_json_path() const { return join(dir_, "tokenizer.json"); }

}  // namespace glimpse
