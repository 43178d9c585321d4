// The embedded default model: the tiny SmolVLM that the project trains itself
// (weights/tiny/, issue 6), so that `glimpse describe IMAGE` works offline with no -m.
#pragma once

#include <string>
#include <utility>

namespace glimpse::app {

// The file names of the default pair inside its folder.
inline constexpr const char* kDefaultTextFile = "tiny-smolvlm-text-f32.gguf";
inline constexpr const char* kDefaultMmprojFile = "mmproj-tiny-smolvlm-f32.gguf";

// (text GGUF, mmproj GGUF) of the default model. Looks, in order, in
//   <dir of the binary>/../weights/tiny        (a build folder inside the checkout)
//   <dir of the binary>/../share/glimpse/tiny  (an installed tree)
//   <dir of the binary>/weights/tiny
//   <source tree>/weights/tiny                 (GLIMPSE_SOURCE_DIR, baked in at build time)
// and takes the first folder holding both files. Error(Usage) listing the folders tried when
// none does.
std::pair<std::string, std::string> default_model_files();

// What every model-loading command does with its -m/--mmproj: no -m means the default pair
// (then --mmproj alone is Error(Usage): the default model has its own).
void use_default_model_if_unset(std::string& model, std::string& mmproj);

}  // namespace glimpse::app
