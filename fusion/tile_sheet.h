// A picture of what the vision encoder is given: the tiles of one image laid out in their grid,
// the global image to the right, each with its patch grid drawn over it. `glimpse tokenize
// --image ... --grid-png` writes it; it shows a newcomer that the model never sees "the photo",
// only fixed-size squares cut into patches.
#pragma once

#include <vector>

#include "fusion/mm_prompt.h"
#include "vision/image.h"

namespace glimpse {

// tiles: in encoder order (rows × cols tiles row by row, then the global image; or one frame
// when the grid is 0 × 0), all the same size. patch: patch side in pixels (0 = no grid lines).
// Tiles are separated by a gap of 8 pixels on a white background; grid lines are drawn by
// darkening the pixels under them.
RgbImage tile_sheet(const std::vector<RgbImage>& tiles, const ImageGrid& grid, int patch);

}  // namespace glimpse
