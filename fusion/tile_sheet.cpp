#include "fusion/tile_sheet.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace glimpse {

namespace {

constexpr int kGap = 8;

// Copies `tile` into `sheet` at (x0, y0), darkening every pixel on a patch boundary.
void place(RgbImage& sheet, const RgbImage& tile, int x0, int y0, int patch) {
    for (int y = 0; y < tile.height; ++y) {
        std::memcpy(sheet.at(x0, y0 + y), tile.row(y), size_t(tile.width) * 3);
        for (int x = 0; x < tile.width; ++x) {
            const bool line = patch > 0 && (x % patch == 0 || y % patch == 0);
            if (!line) continue;
            uint8_t* px = sheet.at(x0 + x, y0 + y);
            for (int ch = 0; ch < 3; ++ch) px[ch] = uint8_t(px[ch] / 2);
        }
    }
}

}  // namespace

RgbImage tile_sheet(const std::vector<RgbImage>& tiles, const ImageGrid& grid, int patch) {
    if (tiles.empty() || int(tiles.size()) != grid.n_tiles())
        throw std::invalid_argument("tile_sheet: tiles do not match the grid");
    const int S = tiles[0].width, H = tiles[0].height;
    for (const RgbImage& t : tiles)
        if (t.width != S || t.height != H) throw std::invalid_argument("tile_sheet: tiles of different sizes");
    const int rows = std::max(grid.rows, 1), cols = grid.cols;  // cols = 0: just the one frame
    const int global_x = kGap + cols * (S + kGap) + (cols ? kGap : 0);  // an extra gap sets the global image apart
    const int width = global_x + S + kGap;
    const int height = rows * (H + kGap) + kGap;
    RgbImage sheet(width, height);
    std::fill(sheet.pixels.begin(), sheet.pixels.end(), uint8_t(255));
    for (int r = 0; r < grid.rows; ++r)
        for (int c = 0; c < grid.cols; ++c)
            place(sheet, tiles[size_t(r * grid.cols + c)], kGap + c * (S + kGap), kGap + r * (H + kGap), patch);
    // The global image (or the single frame) to the right of the grid, at the top.
    place(sheet, tiles.back(), global_x, kGap, patch);
    return sheet;
}

}  // namespace glimpse
