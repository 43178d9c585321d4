// A 5×7 pixel font for the ASCII letters, digits and signs and the Cyrillic alphabet, drawn
// into RgbImage: the labels under the pictures `glimpse inspect` writes (the default model
// answers in English and Russian). Hand-made tables, no font dependency.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vision/image.h"

namespace glimpse {

// Each glyph is 5×7 pixels (plus one row for descenders) in a cell of 6×9 (one column and one
// row of spacing); `scale` multiplies both.
inline constexpr int kGlyphW = 6, kGlyphH = 9;

// Width in pixels of `text` drawn at `scale` (one cell per UTF-8 character).
int text_width(std::string_view text, int scale = 1);

// Draws `text` with its top-left corner at (x, y) in colour rgb, clipped to the image.
// Characters outside printable ASCII and Cyrillic (other scripts, control bytes) are drawn as
// '?', one per UTF-8 character.
void draw_text(RgbImage& img, int x, int y, std::string_view text, const uint8_t rgb[3], int scale = 1);

// The longest prefix of `text` (whole UTF-8 characters) that is at most max_px wide; when it
// had to be cut, its last character is replaced by '~'.
std::string fit_text(std::string_view text, int max_px, int scale = 1);

}  // namespace glimpse
