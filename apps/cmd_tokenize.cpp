// `glimpse tokenize -m MODEL TEXT`: the tokens a model's own tokenizer makes of a text, one
// line per token (id and piece, with invisible bytes made visible), then a count; `--ids`
// prints only the ids. MODEL: a GGUF file (a vocabulary-only GGUF is enough), a Hugging Face
// folder or tokenizer.json, or a llama2.c checkpoint with --tokenizer tok.bin.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/tokenize_image.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"
#include "weights/llama2c.h"

namespace glimpse::app {

namespace {

namespace fs = std::filesystem;

struct TokenizeOptions {
    std::string model, text, file, tokenizer;
    bool ids_only = false, no_bos = false, no_special = false, json = false;
    TokenizeImageOptions image;  // --image mode
};

std::string read_text_file(const std::string& path) {
    if (path == "-") {
        std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        if (std::cin.bad()) throw input_error("<stdin>", "cannot read");
        return s;
    }
    std::error_code ec;
    if (!fs::exists(path, ec)) throw input_error(path, "no such file");
    if (fs::is_directory(path, ec)) throw input_error(path, "is a folder, expected a text file");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw input_error(path, "cannot open");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) throw input_error(path, "cannot read");
    return s;
}

// A folder: tokenizer.json (Hugging Face), else its one text-model GGUF (mmproj files aside).
std::string model_in_folder(const std::string& dir) {
    if (fs::is_regular_file(fs::path(dir) / "tokenizer.json")) return (fs::path(dir) / "tokenizer.json").string();
    std::string found;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (e.path().extension() != ".gguf" || name.rfind("mmproj", 0) == 0) continue;
        if (!found.empty()) throw Error(ErrorKind::Usage, dir + ": holds several GGUF files; pass one with -m");
        found = e.path().string();
    }
    if (found.empty()) throw model_error(dir, "has neither tokenizer.json nor a text-model GGUF file");
    return found;
}

std::unique_ptr<Tokenizer> open_tokenizer(const TokenizeOptions& o) {
    std::error_code ec;
    if (!fs::exists(o.model, ec)) throw input_error(o.model, "no such file or folder");
    const std::string path = fs::is_directory(o.model, ec) ? model_in_folder(o.model) : o.model;
    if (Llama2cCheckpoint::looks_like(path)) {
        if (o.tokenizer.empty())
            throw Error(ErrorKind::Usage,
                        path + ": a llama2.c checkpoint has no vocabulary; pass its tokenizer with --tokenizer tok.bin");
        return load_tokenizer_llama2c(o.tokenizer, Llama2cCheckpoint::open(path).config().vocab_size);
    }
    if (!o.tokenizer.empty()) throw Error(ErrorKind::Usage, "--tokenizer is for llama2.c checkpoints only");
    const auto mapped = MappedFile::open(path);
    if (mapped->size() >= 4 && std::memcmp(mapped->data(), "GGUF", 4) == 0)
        return load_tokenizer_gguf(GgufFile::parse(mapped));
    if (fs::path(path).extension() == ".json") return load_tokenizer_hf_json(path);
    throw model_error(path, "unrecognised model (expected a GGUF file, a Hugging Face folder or tokenizer.json, or a "
                            "llama2.c checkpoint with --tokenizer)");
}

// A piece made readable on one line: C escapes for control characters, <0xNN> for bytes that
// are not part of valid UTF-8, everything else as it is.
std::string visible(std::string_view piece) {
    std::string out;
    for (size_t pos = 0; pos < piece.size();) {
        const utf8::Char c = utf8::decode_at(piece, pos);
        char buf[16];
        if (!c.valid) {
            for (size_t i = 0; i < c.len; ++i) {
                std::snprintf(buf, sizeof buf, "<0x%02X>", static_cast<uint8_t>(piece[pos + i]));
                out += buf;
            }
        } else if (c.cp == '\n') out += "\\n";
        else if (c.cp == '\t') out += "\\t";
        else if (c.cp == '\r') out += "\\r";
        else if (c.cp == '\\') out += "\\\\";
        else if (c.cp < 0x20 || c.cp == 0x7F || (c.cp >= 0x80 && c.cp < 0xA0)) {
            std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(c.cp));
            out += buf;
        } else out.append(piece.substr(pos, c.len));
        pos += c.len;
    }
    return out;
}

int run_tokenize(TokenizeOptions& o, bool text_given) {
    if (!o.image.image.empty()) {
        if (o.ids_only || o.no_bos || o.no_special || !o.file.empty() || !o.tokenizer.empty())
            throw Error(ErrorKind::Usage, "tokenize --image takes TEXT (the prompt), --mmproj, --image-max-tiles, --grid-png and --json");
        o.image.model = o.model;
        o.image.prompt = text_given ? o.text : "Describe this image.";
        o.image.json = o.json;
        return run_tokenize_image(o.image);
    }
    if (!o.image.mmproj.empty() || !o.image.grid_png.empty())
        throw Error(ErrorKind::Usage, "--mmproj and --grid-png go with --image");
    if (text_given == !o.file.empty())
        throw Error(ErrorKind::Usage, "tokenize: give the text either as an argument or with -f FILE (-f - reads stdin)");
    const std::unique_ptr<Tokenizer> tok = open_tokenizer(o);
    const std::string text = o.file.empty() ? o.text : read_text_file(o.file);
    std::vector<int32_t> ids = tok->encode(text, true, !o.no_special);
    if (o.no_bos && tok->add_bos() && !ids.empty() && ids.front() == tok->bos_id()) ids.erase(ids.begin());

    if (o.ids_only) {
        std::string line;
        for (size_t i = 0; i < ids.size(); ++i) {
            if (i) line += ' ';
            line += std::to_string(ids[i]);
        }
        std::printf("%s\n", line.c_str());
        return 0;
    }
    if (o.json) {
        nlohmann::json arr = nlohmann::json::array();
        for (int32_t id : ids) {
            const std::string piece = tok->token_to_piece(id, true);
            nlohmann::json row = {{"id", id}, {"piece", utf8::sanitize(piece)}, {"special", tok->is_special(id)}};
            if (!utf8::is_valid(piece)) {  // a piece of a character: its bytes
                std::vector<int> bytes;
                for (char ch : piece) bytes.push_back(static_cast<uint8_t>(ch));
                row["bytes"] = bytes;
            }
            arr.push_back(std::move(row));
        }
        std::printf("%s\n", nlohmann::json({{"n_tokens", ids.size()}, {"tokens", arr}}).dump(1).c_str());
        return 0;
    }
    int width = 2;
    for (int32_t id : ids) width = std::max(width, static_cast<int>(std::to_string(id).size()));
    std::printf("%*s  piece\n", width, "id");
    for (int32_t id : ids) {
        const std::string piece = visible(tok->token_to_piece(id, true));
        if (tok->is_special(id)) std::printf("%*d  %s  (special)\n", width, id, piece.c_str());
        else std::printf("%*d  '%s'\n", width, id, piece.c_str());
    }
    std::printf("%zu token%s\n", ids.size(), ids.size() == 1 ? "" : "s");
    return 0;
}

}  // namespace

Command add_tokenize(CLI::App& app) {
    auto* sub = app.add_subcommand("tokenize", "Show the tokens a model's tokenizer makes of a text");
    sub->footer(
        "MODEL may be a GGUF file (a vocabulary-only GGUF is enough), a Hugging Face folder or its\n"
        "tokenizer.json, or a llama2.c checkpoint together with --tokenizer tok.bin.\n"
        "Pieces are quoted; \\n, \\t, \\r and \\uXXXX stand for control characters, <0xNN> for bytes\n"
        "that are only part of a UTF-8 character. Special tokens are matched in the text unless\n"
        "--no-special is given.\n"
        "With --image IMG (and a vision model: -m with its mmproj beside it or --mmproj) it shows what the\n"
        "model sees: the tile grid, the number of image tokens, and the prompt with its image positions\n"
        "(TEXT is then the question, default \"Describe this image.\"); --grid-png writes the tiles as a picture.\n"
        "Example: glimpse tokenize -m ../shared/golden/smolvlm-tiny/smolvlm-tiny-text-q8_0.gguf 'Hello world'");
    auto o = std::make_shared<TokenizeOptions>();
    sub->add_option("-m,--model", o->model, "GGUF file, Hugging Face folder / tokenizer.json, or llama2.c checkpoint")
        ->required();
    auto* text = sub->add_option("TEXT", o->text, "the text to tokenize");
    sub->add_option("-f,--file", o->file, "read the text from FILE instead (- = stdin), bytes as they are")->excludes(text);
    sub->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin (with a llama2.c checkpoint)");
    sub->add_flag("--ids", o->ids_only, "print only the ids, on one line");
    sub->add_flag("--no-bos", o->no_bos, "leave out the BOS token the vocabulary would add");
    sub->add_flag("--no-special", o->no_special, "treat special-token text (<|im_start|>) as plain text");
    sub->add_flag("--json", o->json, "print one JSON document: ids, pieces, special flags");
    sub->add_option("--image", o->image.image, "show how this image enters the prompt of a vision-language model");
    sub->add_option("--mmproj", o->image.mmproj, "with --image: the vision tower GGUF (default: mmproj*.gguf beside -m)");
    sub->add_option("--image-max-tiles", o->image.max_tiles, "with --image: SmolVLM's tile cap (0 = the model's own rule)")
        ->check(CLI::Range(0, 1024));
    sub->add_option("--grid-png", o->image.grid_png, "with --image: write the tiles and their patch grid to this PNG");
    return {sub, [o, text] { return run_tokenize(*o, text->count() > 0); }};
}

}  // namespace glimpse::app
