#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/helpers.h"
#include "weights/hf_folder.h"
#include "weights/safetensors.h"

using namespace glimpse;
using glimpse::test::TempDir;
using glimpse::test::write_file;
namespace fs = std::filesystem;

namespace {

// A small F32 tensor whose values are `first`, first+1, ...; the data lives in `store`.
Tensor f32_tensor(const std::string& name, std::array<int64_t, 4> ne, int n_dims, float first,
                  std::vector<std::vector<float>>& store) {
    Tensor t;
    t.name = name;
    t.dtype = DType::F32;
    t.n_dims = n_dims;
    t.ne = ne;
    t.nb = contiguous_strides(DType::F32, ne);
    store.emplace_back(size_t(t.numel()));
    for (size_t i = 0; i < store.back().size(); ++i) store.back()[i] = first + float(i);
    t.data = store.back().data();
    return t;
}

const char* kConfig = R"({"architectures": ["Idefics3ForConditionalGeneration"], "model_type": "idefics3",
  "text_config": {"hidden_size": 4}})";

// config.json + two shards + an index: the layout of a sharded Hub model.
struct ShardedFolder {
    TempDir dir;
    std::vector<std::vector<float>> store;
    ShardedFolder(const std::string& index_json) {
        write_file(dir / "config.json", std::string(kConfig));
        write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                          {f32_tensor("model.embed.weight", {4, 3, 1, 1}, 2, 0, store),
                           f32_tensor("model.norm.weight", {4, 1, 1, 1}, 1, 100, store)},
                          {{"format", "pt"}});
        write_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                          {f32_tensor("lm_head.weight", {4, 3, 1, 1}, 2, 200, store)});
        write_file(dir / "model.safetensors.index.json", index_json);
    }
};

const std::string kGoodIndex = R"({"metadata": {"total_size": 112}, "weight_map": {
  "model.embed.weight": "model-00001-of-00002.safetensors",
  "model.norm.weight": "model-00001-of-00002.safetensors",
  "lm_head.weight": "model-00002-of-00002.safetensors"}})";

void require_error(const std::string& dir, ErrorKind kind, const std::string& where, const std::string& what) {
    INFO("expecting: " << where << " ... " << what);
    try {
        HfFolder::open(dir);
        FAIL("open succeeded");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(e.kind() == kind);
        CHECK(msg.rfind(where + ": ", 0) == 0);
        CHECK(msg.find('\n') == std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("HF folder with two shards and an index", "[hf]") {
    ShardedFolder f(kGoodIndex);
    const std::string dir = f.dir.path().string();
    REQUIRE(HfFolder::looks_like(dir));
    const HfFolder hf = HfFolder::open(dir);
    CHECK(hf.dir() == dir);
    CHECK(hf.architecture() == "Idefics3ForConditionalGeneration");
    CHECK(hf.model_type() == "idefics3");
    CHECK(hf.config()["text_config"]["hidden_size"] == 4);
    REQUIRE(hf.shard_files().size() == 2);
    CHECK(fs::path(hf.shard_files()[0]).filename() == "model-00001-of-00002.safetensors");
    REQUIRE(hf.tensors().size() == 3);
    CHECK(hf.tensors()[0].name == "lm_head.weight");  // sorted by name
    CHECK(hf.tensors()[1].name == "model.embed.weight");
    CHECK(hf.tensors()[2].name == "model.norm.weight");
    const Tensor& lm = hf.tensor("lm_head.weight");
    CHECK(lm.ne == std::array<int64_t, 4>{4, 3, 1, 1});
    CHECK(f32_data(lm)[5] == 205.0f);
    CHECK(f32_data(hf.tensor("model.norm.weight"))[3] == 103.0f);
    CHECK(hf.find_tensor("nope") == nullptr);
    CHECK_THROWS_WITH(hf.tensor("nope"), Catch::Contains("no tensor named \"nope\""));
    CHECK_FALSE(hf.has_tokenizer_json());
    write_file(f.dir / "tokenizer.json", std::string("{}"));
    CHECK(hf.has_tokenizer_json());
    CHECK(hf.tokenizer_json_path() == (f.dir / "tokenizer.json").string());
}

TEST_CASE("HF folder views outlive the folder object", "[hf]") {
    ShardedFolder f(kGoodIndex);
    Tensor kept;
    {
        const HfFolder hf = HfFolder::open(f.dir.path().string());
        kept = hf.tensor("model.embed.weight");
    }
    CHECK(f32_data(kept)[11] == 11.0f);  // the shard mapping is kept alive by the view
}

TEST_CASE("HF folder with a single model.safetensors", "[hf]") {
    TempDir dir;
    std::vector<std::vector<float>> store;
    write_file(dir / "config.json", std::string(R"({"model_type": "llama"})"));
    write_safetensors((dir / "model.safetensors").string(), {f32_tensor("w", {2, 2, 1, 1}, 2, 7, store)});
    const HfFolder hf = HfFolder::open(dir.path().string());
    CHECK(hf.architecture().empty());
    CHECK(hf.model_type() == "llama");
    CHECK(hf.shard_files().size() == 1);
    CHECK(f32_data(hf.tensor("w"))[0] == 7.0f);
}

TEST_CASE("HF folder: missing folder, config or weights", "[hf][hostile]") {
    TempDir dir;
    const std::string d = dir.path().string();
    require_error(d + "/absent", ErrorKind::BadInput, d + "/absent", "no such folder");
    write_file(dir / "file.txt", std::string("x"));
    require_error(d + "/file.txt", ErrorKind::BadInput, d + "/file.txt", "not a folder");
    CHECK_FALSE(HfFolder::looks_like(d));
    CHECK_FALSE(HfFolder::looks_like(d + "/file.txt"));
    require_error(d, ErrorKind::Model, d + "/config.json", "missing");
    write_file(dir / "config.json", std::string("{\"model_type\": "));
    require_error(d, ErrorKind::Model, d + "/config.json", "invalid JSON");
    write_file(dir / "config.json", std::string(100000, '[') + std::string(100000, ']'));
    require_error(d, ErrorKind::Model, d + "/config.json", "nested more than 64 levels");
    write_file(dir / "config.json", "{\"pad\": \"" + std::string(16 << 20, 'x') + "\"}");
    require_error(d, ErrorKind::Model, d + "/config.json", "over the 16777216-byte limit");
    write_file(dir / "config.json", std::string("[1, 2]"));
    require_error(d, ErrorKind::Model, d + "/config.json", "not a JSON object");
    write_file(dir / "config.json", std::string("{}"));
    require_error(d, ErrorKind::Model, d, "no model.safetensors");
    write_file(dir / "model.safetensors", std::string("garbage!"));
    require_error(d, ErrorKind::Model, d + "/model.safetensors", "header length");
}

TEST_CASE("HF folder: broken indexes and shards are refused", "[hf][hostile]") {
    SECTION("missing shard") {
        ShardedFolder f(kGoodIndex);
        fs::remove(f.dir / "model-00002-of-00002.safetensors");
        require_error(f.dir.path().string(), ErrorKind::Model, (f.dir / "model.safetensors.index.json").string(),
                      "shard \"model-00002-of-00002.safetensors\" named in weight_map is missing");
    }
    SECTION("shard name escaping the folder") {
        for (const char* name : {"../x.safetensors", "sub/x.safetensors", "..", "a\\\\b", "", "x..y"}) {
            ShardedFolder f(std::string(R"({"weight_map": {"lm_head.weight": ")") + name + "\"}}");
            require_error(f.dir.path().string(), ErrorKind::Model, (f.dir / "model.safetensors.index.json").string(),
                          "must be plain file names");
        }
    }
    SECTION("tensor in the index but not in its shard") {
        ShardedFolder f(R"({"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}})");
        require_error(f.dir.path().string(), ErrorKind::Model, (f.dir / "model.safetensors.index.json").string(),
                      "tensor \"lm_head.weight\" is listed in shard \"model-00001-of-00002.safetensors\"");
    }
    SECTION("tensor absent from every shard") {
        ShardedFolder f(R"({"weight_map": {"ghost": "model-00001-of-00002.safetensors",
                             "lm_head.weight": "model-00002-of-00002.safetensors"}})");
        require_error(f.dir.path().string(), ErrorKind::Model, (f.dir / "model.safetensors.index.json").string(),
                      "tensor \"ghost\"");
    }
    SECTION("the same tensor in two shards") {
        ShardedFolder f(kGoodIndex);
        std::vector<std::vector<float>> store;
        write_safetensors((f.dir / "model-00002-of-00002.safetensors").string(),
                          {f32_tensor("lm_head.weight", {4, 3, 1, 1}, 2, 0, store),
                           f32_tensor("model.norm.weight", {4, 1, 1, 1}, 1, 0, store)});
        require_error(f.dir.path().string(), ErrorKind::Model,
                      (f.dir / "model-00002-of-00002.safetensors").string(),
                      "tensor \"model.norm.weight\" is also in model-00001-of-00002.safetensors");
    }
    SECTION("index without a weight_map, or with a non-string file") {
        ShardedFolder a(R"({"metadata": {}})");
        require_error(a.dir.path().string(), ErrorKind::Model, (a.dir / "model.safetensors.index.json").string(),
                      "no \"weight_map\"");
        ShardedFolder b(R"({"weight_map": {"lm_head.weight": 2}})");
        require_error(b.dir.path().string(), ErrorKind::Model, (b.dir / "model.safetensors.index.json").string(),
                      "not a file name string");
        ShardedFolder c(R"({"weight_map": {)");
        require_error(c.dir.path().string(), ErrorKind::Model, (c.dir / "model.safetensors.index.json").string(),
                      "invalid JSON");
    }
    SECTION("a corrupt shard names the shard") {
        ShardedFolder f(kGoodIndex);
        auto bytes = glimpse::test::read_file(f.dir / "model-00002-of-00002.safetensors");
        bytes.resize(bytes.size() - 4);
        write_file(f.dir / "model-00002-of-00002.safetensors", bytes);
        require_error(f.dir.path().string(), ErrorKind::Model, (f.dir / "model-00002-of-00002.safetensors").string(),
                      "lie outside");
    }
}

TEST_CASE("HF folder: a Hub cache snapshot of symlinks loads", "[hf]") {
    ShardedFolder blobs(kGoodIndex);
    TempDir snap;
    for (const char* name : {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                             "model-00002-of-00002.safetensors"})
        fs::create_symlink(blobs.dir / name, snap / name);
    const HfFolder hf = HfFolder::open(snap.path().string());
    CHECK(hf.tensors().size() == 3);
}
