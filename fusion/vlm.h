// A vision-language model as one object: the text decoder with its tokenizer and chat
// template, the vision tower with its projector, and the image-token layout that joins them.
// This is where the two towers meet (DESIGN.md: apps → fusion → text, vision):
//
//   image file ─ decode ─ preprocess (tiles) ─ ViT ─ projector ─┐ embeddings [n][n_embd]
//   prompt text ─ chat template ─ split at the image marker ────┴─ MmPrompt ─ decoder ─ answer
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "fusion/mm_prompt.h"
#include "text/chat_template.h"
#include "text/llama_forward.h"
#include "text/llama_model.h"
#include "text/tokenizer.h"
#include "vision/image.h"
#include "vision/vit_model.h"

namespace glimpse {

struct VlmModel {
    LlamaModel text;
    std::unique_ptr<Tokenizer> tokenizer;
    ChatTemplate chat;  // the text model's own (or the family's default)
    VisionModel vision;
    ImageLayout layout = ImageLayout::Idefics3;

    const std::string& marker() const { return chat.image_marker; }
};

// Opens both towers. `model`: a GGUF text model (its mmproj from `mmproj`, else the one
// mmproj*.gguf beside it), a folder holding a text GGUF and an mmproj*.gguf, or a Hugging Face
// folder (Idefics3/SmolVLM, Llava) holding both towers. `chat_template`: a name to override the
// model's own ("" = the model's; a model without one gets its family's).
// Error(Usage) when no mmproj can be found, Error(Model) when the towers do not fit together
// (projector width != text n_embd), naming both files.
VlmModel open_vlm(const std::string& model, const std::string& mmproj = "", const std::string& chat_template = "");

// How an image is cut and encoded.
struct ImageOptions {
    int max_tiles = 0;  // SmolVLM: at most this many tiles besides the global image (0 = the model's own rule)
};

// Where the time of one image went (-v).
struct ImageTimings {
    double decode_ms = 0;      // file → RGB
    double preprocess_ms = 0;  // resize, tiles, normalisation
    double encode_ms = 0;      // ViT blocks
    double project_ms = 0;     // post-LN, projector
};

struct EncodedImage {
    ImageGrid grid;            // tiles and tokens per tile
    int width = 0, height = 0; // of the decoded image
    std::vector<float> embd;   // [grid.n_embeddings()][text n_embd]
};

// The model family's Hugging Face preprocessing alone: the uint8 tiles the encoder takes, in
// encoder order (SmolVLM: row by row, then the global image), and the grid they form.
std::vector<RgbImage> preprocess_image(const VlmModel& m, const RgbImage& img, const ImageOptions& opt, ImageGrid& grid);

// Preprocesses (the model family's Hugging Face processor rules) and encodes one image.
EncodedImage encode_image(const VlmModel& m, const RgbImage& img, const ImageOptions& opt, ThreadPool& pool,
                          ImageTimings* t = nullptr);
// The same from a file (its decode time counted too). Error(BadInput) naming the file.
EncodedImage encode_image_file(const VlmModel& m, const std::string& path, const ImageOptions& opt, ThreadPool& pool,
                               ImageTimings* t = nullptr);

// The prompt for one user turn: `user` through the chat template, with the images placed
// where `user` has the marker "<__media__>" (llama.cpp's) or the template's own marker, and
// otherwise first, before the text (as the models' own chat templates put them).
// system: nullopt = the template's default; "" = none.
MmPrompt build_prompt(const VlmModel& m, const std::string& user, const std::vector<const EncodedImage*>& images,
                      const std::optional<std::string>& system = std::nullopt, bool add_special = true);

// Runs the prompt through `ctx` after its current position, as one forward over its input
// embeddings (prompt_embeddings). logits [n_vocab] of the last position. Error(Usage) if it
// does not fit in the context (check_prompt_fits).
void eval_prompt(LlamaContext& ctx, const MmPrompt& prompt, const std::vector<const EncodedImage*>& images,
                 std::vector<float>& logits);

// Error(Usage) when the prompt is empty or does not fit after ctx's current position, giving
// both sizes and what to change.
void check_prompt_fits(const LlamaContext& ctx, const MmPrompt& prompt);
// The prompt's input embeddings [n_positions][n_embd]: text pieces looked up in the token
// table (Error(Model) for an id outside it), image runs copied from their images.
std::vector<float> prompt_embeddings(const LlamaModel& text, const MmPrompt& prompt,
                                     const std::vector<const EncodedImage*>& images);

}  // namespace glimpse
