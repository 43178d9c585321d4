// A Hugging Face model folder, loaded as it is published (no conversion step):
//   config.json                          (required; must be a JSON object)
//   model.safetensors                    (one file), or
//   model.safetensors.index.json         {"weight_map": {tensor: shard file}} + the shards
//   tokenizer.json                       (optional here; the tokenizer reads it)
// Like transformers, a folder holding model.safetensors uses it and ignores any index.
// The folder may be a Hub cache snapshot whose files are symlinks into ../../blobs.
//
// Checks: shard names in the index are plain file names inside the folder (no '/', '\' or
// ".."), every shard exists, every tensor the index lists is in the shard it names, and no
// tensor appears in two shards. Tensors present in a shard but absent from the index are
// kept (transformers loads whole shards too).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"

namespace glimpse {

class HfFolder {
public:
    // Error(BadInput, "<dir>: ...") when the folder does not exist or is not a folder;
    // Error(Model, "<dir>/<file>: ...") for anything wrong inside it.
    static HfFolder open(const std::string& dir);
    static bool looks_like(const std::string& path);  // a directory holding config.json; never throws

    const std::string& dir() const { return dir_; }
    const nlohmann::json& config() const { return *config_; }
    std::string architecture() const;  // config["architectures"][0], or "" when absent
    std::string model_type() const;    // config["model_type"], or "" when absent
    const std::vector<std::string>& shard_files() const { return shard_files_; }  // full paths
    const std::vector<Tensor>& tensors() const { return tensors_; }              // sorted by name
    const Tensor* find_tensor(std::string_view name) const;
    const Tensor& tensor(std::string_view name) const;  // throws Error(Model) naming the folder
    bool has_tokenizer_json() const;
    std::string tokenizer_json_path() const;  // <dir>/tokenizer.json (whether or not it exists)

private:
    std::string dir_;
    std::shared_ptr<const nlohmann::json> config_;
    std::vector<std::string> shard_files_;
    std::vector<Tensor> tensors_;
};

// Reads a small JSON file (config.json, index, ...) into a value, with errors
// "<path>: ..." of kind Model. Files over `max_bytes` are refused.
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = 64ull << 20);

}  // namespace glimpse
