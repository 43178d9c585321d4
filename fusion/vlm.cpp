#include "fusion/vlm.h"

#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/ops.h"
#include "text/model_files.h"
#include "vision/preprocess.h"
#include "vision/vit_forward.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"

namespace glimpse {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

bool is_mmproj_name(const fs::path& p) {
    const std::string name = p.filename().string();
    return name.rfind("mmproj", 0) == 0 && p.extension() == ".gguf";
}

// The one mmproj*.gguf in `dir`; "" if there is none; Error(Usage) if there are several.
std::string find_mmproj(const fs::path& dir) {
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file(ec) && is_mmproj_name(e.path())) found.push_back(e.path().string());
    if (found.size() > 1)
        throw Error(ErrorKind::Usage, dir.string() + ": holds " + std::to_string(found.size()) +
                                          " mmproj*.gguf files; choose one with --mmproj");
    return found.empty() ? "" : found[0];
}

// The template named by the caller, else the model's own if glimpse knows it, else the
// family's (SmolVLM or LLaVA-1.5): a VLM always needs one to place its images.
ChatTemplate vlm_template(const LlamaModel& m, ImageLayout layout, const std::string& name) {
    if (!name.empty()) return chat_template_by_name(name);
    const std::string text = model_chat_template_text(m);
    if (!text.empty())
        if (auto t = recognise_chat_template(text)) return *t;
    return chat_template_by_name(layout == ImageLayout::Idefics3 ? "smolvlm" : "llava");
}

void check_towers_fit(const VlmModel& m) {
    const int width = projected_dim(m.vision.config);
    if (width != m.text.config.n_embd)
        throw model_error(m.vision.path, "projects images to width " + std::to_string(width) + " but the text model " +
                                             m.text.path + " has n_embd " + std::to_string(m.text.config.n_embd) +
                                             " (this mmproj belongs to another model)");
}

}  // namespace

VlmModel open_vlm(const std::string& model, const std::string& mmproj, const std::string& chat_template) {
    std::error_code ec;
    if (!fs::exists(model, ec)) throw input_error(model, "no such file or folder");
    VlmModel m;
    if (HfFolder::looks_like(model) && mmproj.empty()) {
        auto folder = std::make_shared<const HfFolder>(HfFolder::open(model));
        m.text = load_llama_hf(folder);
        m.vision = load_vision_hf(folder);
    } else {
        m.text = open_llama_model(model);
        std::string proj = mmproj;
        if (proj.empty()) proj = find_mmproj(fs::is_directory(model, ec) ? fs::path(model) : fs::path(model).parent_path());
        if (proj.empty())
            throw Error(ErrorKind::Usage, model + ": no vision tower: pass the mmproj file with --mmproj (none found beside it)");
        m.vision = open_vision_model(proj);
    }
    m.layout = m.vision.config.projector.kind == ProjectorKind::Idefics3 ? ImageLayout::Idefics3 : ImageLayout::Llava;
    check_towers_fit(m);
    m.tokenizer = load_model_tokenizer(m.text);
    check_image_vocab(m.layout, *m.tokenizer);
    m.chat = vlm_template(m.text, m.layout, chat_template);
    return m;
}

std::vector<RgbImage> preprocess_image(const VlmModel& m, const RgbImage& img, const ImageOptions& opt, ImageGrid& grid) {
    const VisionConfig& c = m.vision.config;
    const int S = c.image_size;
    grid = ImageGrid{0, 0, tokens_per_tile(c)};
    std::vector<RgbImage> tiles;
    if (m.layout == ImageLayout::Idefics3) {
        TiledImage tiled = preprocess_idefics3(img, c.preproc_image_size > 0 ? c.preproc_image_size : S, S, opt.max_tiles);
        grid.rows = tiled.rows;
        grid.cols = tiled.cols;
        tiles = std::move(tiled.tiles);
    } else {
        tiles.push_back(preprocess_llava(img, S, LlavaResize::ShortestEdgeCrop, c.image_mean));
    }
    if (int(tiles.size()) != grid.n_tiles())
        throw std::logic_error("preprocess_image: " + std::to_string(tiles.size()) + " tiles for a " +
                               std::to_string(grid.rows) + "x" + std::to_string(grid.cols) + " grid");
    for (const RgbImage& t : tiles)
        if (t.width != S || t.height != S)
            throw std::logic_error("preprocess_image: a tile is not " + std::to_string(S) + " pixels square");
    return tiles;
}

EncodedImage encode_image(const VlmModel& m, const RgbImage& img, const ImageOptions& opt, ThreadPool& pool,
                          ImageTimings* t) {
    const VisionConfig& c = m.vision.config;
    const int S = c.image_size;
    EncodedImage out;
    out.width = img.width;
    out.height = img.height;

    auto t0 = Clock::now();
    const std::vector<RgbImage> tiles = preprocess_image(m, img, opt, out.grid);
    const size_t tile_floats = size_t(3) * size_t(S) * size_t(S);
    std::vector<float> pixels(tiles.size() * tile_floats);
    for (size_t i = 0; i < tiles.size(); ++i) normalize_tile_u8(c, tiles[i].pixels.data(), pixels.data() + i * tile_floats);
    if (t) t->preprocess_ms += ms_since(t0);

    out.embd.resize(size_t(out.grid.n_embeddings()) * size_t(projected_dim(c)));
    VisionTimings vt;
    encode_tiles(m.vision, pixels.data(), int(tiles.size()), out.embd.data(), pool, &vt);
    if (t) {
        t->encode_ms += vt.encode_ms();
        t->project_ms += vt.project_ms;
    }
    return out;
}

EncodedImage encode_image_file(const VlmModel& m, const std::string& path, const ImageOptions& opt, ThreadPool& pool,
                               ImageTimings* t) {
    const auto t0 = Clock::now();
    const RgbImage img = load_image(path);
    if (t) t->decode_ms += ms_since(t0);
    return encode_image(m, img, opt, pool, t);
}

MmPrompt build_prompt(const VlmModel& m, const std::string& user, const std::vector<const EncodedImage*>& images,
                      const std::optional<std::string>& system, bool add_special) {
    const std::string& marker = m.marker();
    std::string content = user;
    // llama.cpp's marker stands for the template's own.
    for (size_t at; (at = content.find("<__media__>")) != std::string::npos;) content.replace(at, 11, marker);
    size_t n_markers = 0;
    for (size_t at = content.find(marker); at != std::string::npos; at = content.find(marker, at + marker.size()))
        ++n_markers;
    if (n_markers == 0 && !images.empty()) {
        // As the models' own templates put them: SmolVLM "<image>text", LLaVA "<image>\ntext".
        std::string prefix;
        for (size_t i = 0; i < images.size(); ++i) prefix += marker + (m.layout == ImageLayout::Llava ? "\n" : "");
        content = prefix + content;
    }
    std::vector<ImageGrid> grids;
    for (const EncodedImage* img : images) grids.push_back(img->grid);
    return assemble_prompt(m.chat.render_user(content, system), marker, grids, m.layout, *m.tokenizer, add_special);
}

void check_prompt_fits(const LlamaContext& ctx, const MmPrompt& prompt) {
    const int n = prompt.n_positions();
    if (n == 0) throw Error(ErrorKind::Usage, "the prompt is empty (no tokens to start from)");
    if (ctx.n_past() + n > ctx.n_ctx())
        throw Error(ErrorKind::Usage, "the prompt is " + std::to_string(n) + " positions (" +
                                          std::to_string(prompt.n_image_positions()) + " of them image tokens)" +
                                          (ctx.n_past() ? " after " + std::to_string(ctx.n_past()) + " already used" : "") +
                                          ", more than the context of " + std::to_string(ctx.n_ctx()) +
                                          " (raise --ctx, or lower --image-max-tiles)");
}

// One forward over the whole prompt's input embeddings, not one per piece: a split SmolVLM
// image has ~35 pieces (2-token text runs between 64-row tiles), and every forward call
// streams all the weights again.
std::vector<float> prompt_embeddings(const LlamaModel& text, const MmPrompt& prompt,
                                     const std::vector<const EncodedImage*>& images) {
    const size_t D = size_t(text.config.n_embd);
    const int V = text.config.n_vocab;
    std::vector<float> embd(size_t(prompt.n_positions()) * D);
    size_t row = 0;
    for (const PromptPiece& p : prompt.pieces) {
        if (p.is_image()) {
            if (p.image >= int(images.size()) || p.embd_row + p.n_rows > images[size_t(p.image)]->grid.n_embeddings())
                throw std::logic_error("prompt_embeddings: an image run points outside its image's embeddings");
            std::memcpy(embd.data() + row * D, images[size_t(p.image)]->embd.data() + size_t(p.embd_row) * D,
                        size_t(p.n_rows) * D * sizeof(float));
        } else {
            for (int32_t id : p.tokens)
                if (id < 0 || id >= V)
                    throw model_error(text.path, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                                     std::to_string(V) + " tokens");
            ops::get_rows(text.weights.token_embd, p.tokens.data(), int64_t(p.tokens.size()), embd.data() + row * D);
        }
        row += size_t(p.n_positions());
    }
    return embd;
}

void eval_prompt(LlamaContext& ctx, const MmPrompt& prompt, const std::vector<const EncodedImage*>& images,
                 std::vector<float>& logits) {
    check_prompt_fits(ctx, prompt);
    const std::vector<float> embd = prompt_embeddings(ctx.model(), prompt, images);
    logits.resize(size_t(ctx.config().n_vocab));
    ctx.forward_embeddings(embd.data(), prompt.n_positions(), ctx.n_past(), logits.data(), LogitRows::Last);
}

}  // namespace glimpse
