// Multimodal prompt assembly: a rendered chat prompt with image markers in it becomes a
// sequence of pieces, each either token ids (text) or a run of positions that take image
// embeddings instead of token embeddings.
//
//   "<|im_start|>User:<image>Describe this image.<end_of_utterance>\nAssistant:"
//        │ split at the marker, each image expanded into its model's token layout
//        ▼
//   text "<|im_start|>User:<fake_token_around_image><row_1_col_1>"   → ids
//   image tile 0                                                     → 64 embedding rows
//   text "<fake_token_around_image><row_1_col_2>"                    → ids
//   ...
//
// This is what Hugging Face's processors do when they write `<image>` × n into the text and
// the model overwrites those positions with image features in order (SmolVLM
// `inputs_merger`, LLaVA `masked_scatter`; MODELS.md §3.7, §3.9, §4.5). Adjacent text parts
// are joined before tokenizing, so the ids equal those of the whole expanded string wherever
// the joins sit next to special tokens, which is everywhere in these layouts (byte-level BPE
// tokenizes "\n\n" before <fake_token_around_image> as one token, as Hugging Face does).
// With a SentencePiece vocabulary every text run gets the leading-space prefix, as llama.cpp
// and Hugging Face's legacy Llama tokenizer both do after an image (id 29871 "▁").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace glimpse {

class Tokenizer;

// How the image tokens of one model family are laid out around the embeddings.
enum class ImageLayout {
    Idefics3,  // SmolVLM: per tile <fake_token_around_image><row_r_col_c> + embeddings, "\n"
               // after each row, then "\n" <fake_token_around_image><global-img> + global
               // embeddings + <fake_token_around_image>
    Llava,     // LLaVA-1.5: the embeddings alone, in place of the marker
};

// One image as the vision tower delivered it: rows × cols tiles (0 × 0 when the image was
// not split: one frame) plus, when split, the global image last; each tile gives
// tokens_per_tile embedding rows.
struct ImageGrid {
    int rows = 0;
    int cols = 0;
    int tokens_per_tile = 0;

    int n_tiles() const { return rows * cols + 1; }  // split: tiles + global; unsplit: 1
    int n_embeddings() const { return n_tiles() * tokens_per_tile; }
};

struct PromptPiece {
    std::vector<int32_t> tokens;  // text: its ids (empty for an image run)
    int image = -1;               // image run: which image (index into the prompt's images)
    int embd_row = 0;             // image run: first row in that image's embedding matrix
    int n_rows = 0;               // image run: how many positions it takes

    bool is_image() const { return image >= 0; }
    int n_positions() const { return is_image() ? n_rows : int(tokens.size()); }
};

struct MmPrompt {
    std::vector<PromptPiece> pieces;

    int n_positions() const;
    int n_image_positions() const;
    // The flat sequence: token ids, -1 at image positions (the golden files' `sequence`).
    std::vector<int32_t> sequence() const;
};

// Splits `prompt` at every `marker`; the k-th marker becomes images[k]'s layout. The number
// of markers must equal images.size() (Error(Usage) saying both counts otherwise).
// add_special: the tokenizer's BOS (where the vocabulary asks for one) before the first text.
// Special-token text in the prompt is parsed. Error(Model) if the vocabulary lacks a token the
// layout needs (e.g. <row_1_col_1>), naming it.
MmPrompt assemble_prompt(const std::string& prompt, std::string_view marker, const std::vector<ImageGrid>& images,
                         ImageLayout layout, const Tokenizer& tok, bool add_special = true);

// Error(Model) naming the token if the vocabulary lacks one that every image of this layout
// needs (Idefics3: <fake_token_around_image>, <global-img>, <row_1_col_1>): checked when a
// model is opened, so a broken pair fails before any image is encoded.
void check_image_vocab(ImageLayout layout, const Tokenizer& tok);

// The text of one image's layout with `image_token` standing for each embedding position (for
// display and tests: Hugging Face's expanded prompt writes "<image>").
std::string expanded_image_text(const ImageGrid& g, ImageLayout layout, std::string_view image_token);

}  // namespace glimpse
