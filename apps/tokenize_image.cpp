#include "apps/tokenize_image.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fusion/tile_sheet.h"
#include "fusion/vlm.h"
#include "text/utf8.h"

namespace glimpse::app {

std::string image_run_place(const ImageGrid& g, const PromptPiece& p) {
    const int tile = p.embd_row / g.tokens_per_tile;
    if (g.rows == 0 || tile == g.rows * g.cols) return g.rows ? "global image" : "image";
    return "tile r" + std::to_string(tile / g.cols + 1) + " c" + std::to_string(tile % g.cols + 1);
}

std::string token_text(const Tokenizer& tok, int32_t id) {
    std::string s;
    for (char ch : tok.token_to_piece(id, true)) {
        if (ch == '\n') s += "\\n";
        else s += ch;
    }
    return utf8::sanitize(s);
}

void print_image_prompt(std::FILE* out, const VlmModel& m, const std::string& image_name, const RgbImage& img,
                        const ImageGrid& g, const MmPrompt& prompt) {
    const int S = m.vision.config.image_size;
    std::fprintf(out, "image: %s, %dx%d\n", image_name.c_str(), img.width, img.height);
    if (g.rows > 0)
        std::fprintf(out, "tiles: %d rows x %d cols of %dx%d, plus the whole image shrunk to %dx%d = %d tiles\n", g.rows,
                     g.cols, S, S, S, S, g.n_tiles());
    else
        std::fprintf(out, "tiles: 1 of %dx%d\n", S, S);
    std::fprintf(out, "patches: %dx%d of %d px per tile; image tokens: %d tiles x %d = %d\n",
                 m.vision.config.patches_per_side(), m.vision.config.patches_per_side(), m.vision.config.patch_size,
                 g.n_tiles(), g.tokens_per_tile, g.n_embeddings());
    std::fprintf(out, "prompt: %d positions (%d text tokens, %d image positions)\n\n", prompt.n_positions(),
                 prompt.n_positions() - prompt.n_image_positions(), prompt.n_image_positions());
    for (const PromptPiece& p : prompt.pieces) {
        if (p.is_image()) {
            std::fprintf(out, "  [%s: %d image positions]\n", image_run_place(g, p).c_str(), p.n_rows);
            continue;
        }
        for (int32_t id : p.tokens)
            std::fprintf(out, "%6d  '%s'%s\n", id, token_text(*m.tokenizer, id).c_str(),
                         m.tokenizer->is_special(id) ? "  (special)" : "");
    }
}

int run_tokenize_image(const TokenizeImageOptions& o) {
    const VlmModel m = open_vlm(o.model, o.mmproj);
    const RgbImage img = load_image(o.image);
    ImageOptions opt;
    opt.max_tiles = o.max_tiles;
    EncodedImage enc;  // the grid only: nothing is encoded here
    enc.width = img.width;
    enc.height = img.height;
    const std::vector<RgbImage> tiles = preprocess_image(m, img, opt, enc.grid);
    const ImageGrid& g = enc.grid;
    const MmPrompt prompt = build_prompt(m, o.prompt, {&enc}, std::string());
    const int S = m.vision.config.image_size;

    if (!o.grid_png.empty()) save_image(tile_sheet(tiles, g, m.vision.config.patch_size), o.grid_png);

    if (o.json) {
        nlohmann::json pieces = nlohmann::json::array();
        for (const PromptPiece& p : prompt.pieces) {
            if (p.is_image()) pieces.push_back({{"image", p.image}, {"place", image_run_place(g, p)}, {"positions", p.n_rows}});
            else
                for (int32_t id : p.tokens) pieces.push_back({{"id", id}, {"piece", token_text(*m.tokenizer, id)}});
        }
        const nlohmann::json j = {{"image", o.image},
                                  {"width", img.width},
                                  {"height", img.height},
                                  {"tile_size", S},
                                  {"rows", g.rows},
                                  {"cols", g.cols},
                                  {"tiles", g.n_tiles()},
                                  {"tokens_per_tile", g.tokens_per_tile},
                                  {"image_tokens", g.n_embeddings()},
                                  {"prompt_positions", prompt.n_positions()},
                                  {"prompt", pieces}};
        std::printf("%s\n", j.dump(1).c_str());
        return 0;
    }
    print_image_prompt(stdout, m, o.image, img, g, prompt);
    if (!o.grid_png.empty()) std::printf("\ntile sheet written to %s\n", o.grid_png.c_str());
    return 0;
}

}  // namespace glimpse::app
