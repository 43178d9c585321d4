#include "fusion/mm_prompt.h"

#include "core/error.h"
#include "text/tokenizer.h"

namespace glimpse {

namespace {

// One part of the expanded prompt before tokenizing: text, or a run of image positions.
struct Part {
    std::string text;
    int image = -1;
    int row0 = 0, n = 0;
};

const char* const kFake = "<fake_token_around_image>";
const char* const kGlobal = "<global-img>";

std::string row_col_token(int r, int c) { return "<row_" + std::to_string(r) + "_col_" + std::to_string(c) + ">"; }

// Hugging Face's Idefics3/SmolVLM expansion (processing_smolvlm.py, MODELS.md §3.9): tiles
// row by row, each behind <fake_token_around_image><row_r_col_c>, "\n" after every row, then
// "\n" <fake_token_around_image><global-img> + the global image + <fake_token_around_image>.
// An unsplit image is <fake_token_around_image><global-img> + image + <fake_token_around_image>.
void idefics3_parts(const ImageGrid& g, int image, std::vector<Part>& out) {
    const int n = g.tokens_per_tile;
    if (g.rows > 0 && g.cols > 0) {
        for (int r = 0; r < g.rows; ++r) {
            for (int c = 0; c < g.cols; ++c) {
                out.push_back({std::string(kFake) + row_col_token(r + 1, c + 1)});
                out.push_back({"", image, (r * g.cols + c) * n, n});
            }
            out.push_back({"\n"});
        }
        out.push_back({std::string("\n") + kFake + kGlobal});
        out.push_back({"", image, g.rows * g.cols * n, n});
    } else {
        out.push_back({std::string(kFake) + kGlobal});
        out.push_back({"", image, 0, n});
    }
    out.push_back({kFake});
}

void layout_parts(const ImageGrid& g, ImageLayout layout, int image, std::vector<Part>& out) {
    if (g.tokens_per_tile <= 0 || g.rows < 0 || g.cols < 0)
        throw std::invalid_argument("layout_parts: bad image grid");
    if (layout == ImageLayout::Idefics3) idefics3_parts(g, image, out);
    else out.push_back({"", image, 0, g.n_embeddings()});
}

void require_token(const Tokenizer& tok, const std::string& text) {
    if (!tok.id_of(text))
        throw model_error(tok.source(), "the vocabulary has no " + text + " token, which this model's image layout needs");
}

void check_vocab(const ImageGrid& g, ImageLayout layout, const Tokenizer& tok) {
    if (layout != ImageLayout::Idefics3) return;
    require_token(tok, kFake);
    require_token(tok, kGlobal);
    for (int r = 1; r <= g.rows; ++r)
        for (int c = 1; c <= g.cols; ++c) require_token(tok, row_col_token(r, c));
}

}  // namespace

void check_image_vocab(ImageLayout layout, const Tokenizer& tok) {
    check_vocab(ImageGrid{1, 1, 1}, layout, tok);
}

int MmPrompt::n_positions() const {
    int n = 0;
    for (const auto& p : pieces) n += p.n_positions();
    return n;
}

int MmPrompt::n_image_positions() const {
    int n = 0;
    for (const auto& p : pieces)
        if (p.is_image()) n += p.n_rows;
    return n;
}

std::vector<int32_t> MmPrompt::sequence() const {
    std::vector<int32_t> seq;
    for (const auto& p : pieces) {
        if (p.is_image()) seq.insert(seq.end(), size_t(p.n_rows), -1);
        else seq.insert(seq.end(), p.tokens.begin(), p.tokens.end());
    }
    return seq;
}

MmPrompt assemble_prompt(const std::string& prompt, std::string_view marker, const std::vector<ImageGrid>& images,
                         ImageLayout layout, const Tokenizer& tok, bool add_special) {
    if (marker.empty()) throw std::invalid_argument("assemble_prompt: empty image marker");
    // Split at the markers, expanding each image in place.
    std::vector<Part> parts;
    size_t at = 0, n_markers = 0;
    while (true) {
        const size_t hit = prompt.find(marker, at);
        parts.push_back({prompt.substr(at, hit == std::string::npos ? std::string::npos : hit - at)});
        if (hit == std::string::npos) break;
        if (n_markers < images.size()) {
            check_vocab(images[n_markers], layout, tok);
            layout_parts(images[n_markers], layout, int(n_markers), parts);
        }
        ++n_markers;
        at = hit + marker.size();
    }
    if (n_markers != images.size())
        throw Error(ErrorKind::Usage, "the prompt has " + std::to_string(n_markers) + " image marker(s) (" +
                                          std::string(marker) + ") for " + std::to_string(images.size()) + " image(s)");

    // Join neighbouring text, tokenize each text run; BOS goes before whatever comes first.
    MmPrompt out;
    const bool want_bos = add_special && tok.add_bos() && tok.bos_id() >= 0;
    bool first = true;
    for (size_t i = 0; i < parts.size();) {
        if (parts[i].image >= 0) {
            if (first && want_bos) out.pieces.push_back({{tok.bos_id()}});
            out.pieces.push_back({{}, parts[i].image, parts[i].row0, parts[i].n});
            first = false;
            ++i;
            continue;
        }
        std::string text;
        for (; i < parts.size() && parts[i].image < 0; ++i) text += parts[i].text;
        if (text.empty() && !(first && want_bos)) continue;
        PromptPiece piece;
        piece.tokens = tok.encode(text, first && add_special, /*parse_special=*/true);
        if (!piece.tokens.empty()) out.pieces.push_back(std::move(piece));
        first = false;
    }
    return out;
}

std::string expanded_image_text(const ImageGrid& g, ImageLayout layout, std::string_view image_token) {
    std::vector<Part> parts;
    layout_parts(g, layout, 0, parts);
    std::string s;
    for (const auto& p : parts) {
        if (p.image < 0) s += p.text;
        else
            for (int i = 0; i < p.n; ++i) s += image_token;
    }
    return s;
}

}  // namespace glimpse
