// Preprocessing against the Hugging Face reference (golden ref-hf-e2e: Pillow 9.4 + the HF
// image processors): decode each golden image with load_image, preprocess it with the
// parameters read from the model's mmproj GGUF (HF-PREPROCESSING.md section 2), and compare
// every uint8 tile exactly with img_iK_tiles_u8.png (tiles stacked vertically) and every
// normalised float32 tile bit for bit through its SHA-256 in result.json.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/helpers.h"
#include "vision/image.h"
#include "vision/preprocess.h"
#include "weights/gguf.h"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

// SHA-256 (FIPS 180-4), for comparing float32 tiles with the reference's digests.
std::string sha256_hex(const uint8_t* data, size_t size) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::vector<uint8_t> msg(data, data + size);
    msg.push_back(0x80);
    while (msg.size() % 64 != 56) msg.push_back(0);
    for (int s = 56; s >= 0; s -= 8) msg.push_back(uint8_t((uint64_t(size) * 8) >> s));
    auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
    for (size_t off = 0; off < msg.size(); off += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = uint32_t(msg[off + 4 * i]) << 24 | uint32_t(msg[off + 4 * i + 1]) << 16 |
                   uint32_t(msg[off + 4 * i + 2]) << 8 | msg[off + 4 * i + 3];
        for (int i = 16; i < 64; ++i) {
            const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; ++i) {
            const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
    }
    char hex[65];
    for (int i = 0; i < 8; ++i) std::snprintf(hex + 8 * i, 9, "%08x", h[i]);
    return std::string(hex, 64);
}

// Largest |a - b| over two equally sized tiles.
int max_abs_diff(const RgbImage& a, const RgbImage& b) {
    int worst = 0;
    for (size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
    return worst;
}

void check_model(const fs::path& dir, bool smolvlm) {
    const nlohmann::json result = glimpse::test::read_json(dir / "ref-hf-e2e" / "result.json");
    const GgufFile mmproj = GgufFile::open((dir / result.at("mmproj").get<std::string>()).string());
    const std::vector<float> mean = mmproj.f32_array("clip.vision.image_mean");
    const std::vector<float> stdv = mmproj.f32_array("clip.vision.image_std");
    REQUIRE(mean.size() == 3);
    REQUIRE(stdv.size() == 3);
    const int image_size = int(mmproj.u32("clip.vision.image_size"));
    for (const auto& prompt : result.at("image_prompts")) {
        const std::string image = prompt.at("image").get<std::string>();
        INFO(dir.filename().string() << " " << prompt.at("id").get<std::string>() << " " << image);
        const RgbImage img = load_image((dir / "images" / image).string());
        TiledImage tiled;
        if (smolvlm) {
            tiled = preprocess_idefics3(img, int(mmproj.u32("clip.vision.preproc_image_size")), image_size);
        } else {
            tiled.tiles.push_back(preprocess_llava(img, image_size, LlavaResize::ShortestEdgeCrop, mean.data()));
        }
        CHECK(tiled.rows == prompt.at("grid").at("rows").get<int>());
        CHECK(tiled.cols == prompt.at("grid").at("cols").get<int>());
        const auto shape = prompt.at("tiles_u8_shape").get<std::vector<int>>();  // [n][H][W][3]
        REQUIRE(int(tiled.tiles.size()) == shape[0]);
        const RgbImage stacked = load_image((dir / "ref-hf-e2e" / prompt.at("tiles_u8_file").get<std::string>()).string());
        REQUIRE(stacked.width == shape[2]);
        REQUIRE(stacked.height == shape[0] * shape[1]);
        const auto f32_sha = prompt.at("tiles_f32_sha256").get<std::vector<std::string>>();
        for (int t = 0; t < shape[0]; ++t) {
            INFO("tile " << t);
            const RgbImage& mine = tiled.tiles[size_t(t)];
            REQUIRE(mine.width == shape[2]);
            REQUIRE(mine.height == shape[1]);
            const RgbImage ref = crop(stacked, 0, t * shape[1], shape[2], shape[1]);
            CHECK(max_abs_diff(mine, ref) == 0);
            std::vector<float> chw(mine.pixels.size());
            normalize_to_chw(mine, mean.data(), stdv.data(), chw.data());
            CHECK(sha256_hex(reinterpret_cast<const uint8_t*>(chw.data()), chw.size() * sizeof(float)) == f32_sha[size_t(t)]);
        }
    }
}

}  // namespace

TEST_CASE("sha256 of known strings", "[preprocess]") {
    CHECK(sha256_hex(nullptr, 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const std::string abc = "abc";
    CHECK(sha256_hex(reinterpret_cast<const uint8_t*>(abc.data()), 3) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("golden: JPEG decode matches Pillow's", "[image][golden]") {
    GOLDEN_OR_SKIP(golden);
    for (const char* model : {"smolvlm-tiny", "llava-tiny"}) {
        const fs::path dir = golden / model;
        const nlohmann::json result = glimpse::test::read_json(dir / "ref-hf-e2e" / "result.json");
        for (const auto& prompt : result.at("image_prompts")) {
            const std::string image = prompt.at("image").get<std::string>();
            const fs::path rgb = dir / "ref-hf-e2e" / ("img_" + prompt.at("id").get<std::string>() + "_rgb.bin");
            if (!fs::exists(rgb)) continue;  // shipped only for JPEG inputs
            INFO(model << " " << image);
            const RgbImage mine = load_image((dir / "images" / image).string());
            const std::vector<uint8_t> ref = test::read_file(rgb);
            const auto hw = prompt.at("preprocess").at("input_hw").get<std::vector<int>>();
            REQUIRE(mine.height == hw[0]);
            REQUIRE(mine.width == hw[1]);
            REQUIRE(ref.size() == mine.pixels.size());
            CHECK(ref == mine.pixels);
        }
    }
}

TEST_CASE("golden: SmolVLM tiles equal the Hugging Face processor's", "[preprocess][golden]") {
    GOLDEN_OR_SKIP(golden);
    check_model(golden / "smolvlm-tiny", true);
}

TEST_CASE("golden: LLaVA tiles equal the llava-hf processor's", "[preprocess][golden]") {
    GOLDEN_OR_SKIP(golden);
    check_model(golden / "llava-tiny", false);
}
