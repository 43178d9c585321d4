// Tokenizers of the text tower, read from the model file itself (MODELS.md §3.10, §3.12, §4.5):
//
//   GGUF tokenizer.ggml.model = "gpt2"   byte-level BPE (SmolLM2, StarCoder, Llama-3, Qwen2 ...):
//        words from the pre-tokenizer named by tokenizer.ggml.pre, every byte of a word mapped
//        to a printable stand-in character (space -> "Ġ"), then merges by rank.
//   GGUF tokenizer.ggml.model = "llama"  SentencePiece BPE (Llama-2, LLaVA-1.5): spaces become
//        "▁", a leading "▁" is added, adjacent pieces merge by highest vocabulary score,
//        characters without a token fall back to byte tokens <0xXX>.
//   Hugging Face tokenizer.json (model.type "BPE": SmolLM2-style byte level, or Llama-style
//        with "▁" and byte fallback) and llama2.c tokenizer .bin files (SentencePiece style).
//
// Encoding follows llama.cpp's llama_tokenize (the golden token ids are llama.cpp's):
//   1. special tokens are cut out of the text first, verbatim: control tokens (type 3) only
//      when parse_special is set, user-defined tokens (type 4) always (llama.cpp and HF both
//      do this); longer tokens are matched first;
//   2. each stretch of ordinary text between them is tokenized on its own (the SentencePiece
//      vocabularies give every stretch its leading "▁");
//   3. with add_special, BOS / EOS are added when the vocabulary says so (add_bos / add_eos).
// Decoding concatenates token_to_piece; for a vocabulary that adds a leading space the first
// token's piece loses one leading space (llama_detokenize's rule: only the very first token,
// even a BOS that prints nothing), so text encoded without BOS comes back as it went in.
//
// What round-trips, decode(encode(x, false, false)) == x:
//   byte-level BPE: every byte string, invalid UTF-8 included, whose bytes all have a token
//     (bytes without one are dropped, as llama.cpp does; the StarCoder vocabulary lacks C0 C1
//     F1 F5..FF, so valid UTF-8 outside planes 4-7 always round-trips);
//   SentencePiece: every byte string without U+2581 "▁" (which is the escaped space and decodes
//     as " "), when the vocabulary has no user-defined tokens and has a "▁" token.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/pretokenize.h"
#include "text/utf8.h"

namespace glimpse {

class GgufFile;

// llama.cpp's token types, as tokenizer.ggml.token_type stores them.
enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,      // <unk>
    Control = 3,      // special tokens: BOS, EOS, <|im_start|>, <image> ...
    UserDefined = 4,  // added tokens that are not special: always matched verbatim
    Unused = 5,
    Byte = 6,         // <0xXX> byte-fallback tokens
};

// Everything a tokenizer is built from, whatever file it came from. Loaders fill it; the
// make_* factories check it (Error(Model) naming `source` and the offending entry).
struct VocabSpec {
    std::string source;                      // the file, for error messages
    std::vector<std::string> tokens;         // id -> text as stored (byte-level BPE: "Ġworld")
    std::vector<TokenType> types;            // id -> type; same size as tokens
    std::vector<float> scores;               // SentencePiece: merge priority (higher first); may be empty
    std::vector<std::pair<std::string, std::string>> merges;  // BPE: token pairs, best rank first
    std::string merges_key = "merges";       // how the file names the merges, for errors
    std::vector<uint8_t> strip;              // optional per id: 1 = lstrip, 2 = rstrip (HF added tokens)
    int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;  // -1: none
    bool add_bos = false, add_eos = false;
    std::vector<int32_t> extra_eog;          // more end-of-generation ids (HF generation_config)
};

// How a BPE vocabulary turns text into the symbols that merges combine.
enum class BpeInput {
    ByteLevel,  // pre-tokenizer words; each byte -> its GPT-2 stand-in character
    Metaspace,  // SentencePiece-like: ' ' -> "▁", each character a symbol, byte fallback
};

// Where a Metaspace tokenizer puts a leading "▁" (after spaces became "▁").
enum class SpacePrefix {
    None,
    Always,          // before each stretch of text between special tokens (HF Prepend normalizer)
    IfMissing,       // the same, unless it already starts with "▁" (HF Metaspace "always")
    FirstIfMissing,  // only at the very start of the input, unless there already (HF Metaspace "first")
};

struct BpeOptions {
    BpeInput input = BpeInput::ByteLevel;
    PreTokenizer pre = PreTokenizer::Gpt2;  // ByteLevel: how text is cut into words
    bool add_prefix_space = false;          // ByteLevel: a space before text not starting with one (HF)
    bool ignore_merges = false;             // a word that is itself a token is taken whole (Llama-3)
    SpacePrefix space_prefix = SpacePrefix::None;  // Metaspace
    bool split_on_space = false;            // Metaspace: each "▁word" is a word of its own (HF split)
    bool byte_fallback = false;             // Metaspace: unknown characters -> <0xXX> tokens
    bool fuse_unk = false;                  // consecutive unknown characters give one <unk>
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Token ids of `text` (any bytes, at most 64 MiB: Error(BadInput) beyond). add_special:
    // BOS/EOS per the vocabulary's add_bos / add_eos. parse_special: control-token text
    // ("<|im_start|>") becomes that token.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = true) const;

    // The bytes a token stands for. Control and unknown tokens give their text when
    // render_special is set and nothing otherwise. A piece may be part of a UTF-8 character
    // (byte tokens, byte-level BPE); use TokenStream to print tokens as they come.
    // Error(BadInput) for an id outside [0, n_vocab).
    std::string token_to_piece(int32_t id, bool render_special = true) const;
    // Concatenated pieces; see the leading-space rule at the top of this file.
    std::string decode(std::span<const int32_t> ids, bool render_special = true) const;

    int32_t n_vocab() const { return static_cast<int32_t>(v_.tokens.size()); }
    const std::string& source() const { return v_.source; }
    int32_t bos_id() const { return v_.bos; }  // -1: none
    int32_t eos_id() const { return v_.eos; }
    int32_t eot_id() const { return v_.eot; }
    int32_t unk_id() const { return v_.unk; }
    int32_t pad_id() const { return v_.pad; }
    bool add_bos() const { return v_.add_bos; }
    bool add_eos() const { return v_.add_eos; }

    // Tokens that end generation: EOS, EOT, the extra ids the model files name, and every
    // token whose text is one of llama.cpp's end-of-generation names (<|im_end|>,
    // <|endoftext|>, <end_of_utterance>, <|eot_id|>, <end_of_turn>, ...). Sorted.
    const std::vector<int32_t>& eog_ids() const { return eog_; }
    bool is_eog(int32_t id) const;
    // Control tokens (what Hugging Face calls special tokens).
    bool is_special(int32_t id) const { return token_type(id) == TokenType::Control; }
    TokenType token_type(int32_t id) const;  // Undefined for an id out of range
    // The token's text as the vocabulary stores it ("Ġworld", "▁world", "<image>").
    const std::string& token_text(int32_t id) const;
    std::optional<int32_t> id_of(std::string_view stored_text) const;

protected:
    explicit Tokenizer(VocabSpec spec);
    // Appends the ids of one stretch of ordinary text (no special tokens in it); at_start:
    // the stretch begins the input.
    virtual void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out) const = 0;
    // The bytes of a Normal (or Undefined) token.
    virtual std::string normal_piece(int32_t id) const = 0;
    // Whether decode drops one leading space of the first piece.
    virtual bool strips_leading_space() const { return false; }
    const VocabSpec& vocab() const { return v_; }
    // Id of the byte-fallback token <0xXX> for each byte, or -1.
    const std::vector<int32_t>& byte_tokens() const { return byte_tokens_; }

private:
    struct Fragment {
        size_t begin, size;
        int32_t token;  // -1: ordinary text
    };
    std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;

    VocabSpec v_;
    std::unordered_map<std::string_view, int32_t> ids_;  // views into v_.tokens
    std::vector<int32_t> specials_;                      // control/unknown/user-defined, longest first
    std::vector<int32_t> eog_;
    std::vector<int32_t> byte_tokens_;                   // 256 entries
};

// Prints tokens as they are generated: hands back only whole UTF-8 characters (a character
// split over byte tokens is held until complete); output is always valid UTF-8.
class TokenStream {
public:
    explicit TokenStream(const Tokenizer& tok, bool render_special = false)
        : tok_(&tok), render_special_(render_special) {}
    std::string push(int32_t id) { return utf8_.push(tok_->token_to_piece(id, render_special_)); }
    std::string flush() { return utf8_.flush(); }

private:
    const Tokenizer* tok_;
    bool render_special_;
    utf8::StreamDecoder utf8_;
};

// Factories over a VocabSpec (tests, converters, the embedded model use them directly).
std::unique_ptr<Tokenizer> make_bpe_tokenizer(VocabSpec spec, const BpeOptions& options);
// SentencePiece BPE by scores with byte fallback; add_space_prefix: each stretch of text
// gets a leading "▁" (and decode drops the first piece's leading space).
std::unique_ptr<Tokenizer> make_spm_tokenizer(VocabSpec spec, bool add_space_prefix = true);

// From a GGUF file's tokenizer.* metadata (a vocabulary-only GGUF is enough). Error(Model)
// naming the file and the key for a missing or unsupported tokenizer.ggml.model or
// tokenizer.ggml.pre, arrays of the wrong type or length, merges naming unknown tokens,
// special-token ids out of range.
std::unique_ptr<Tokenizer> load_tokenizer_gguf(const GgufFile& f);
// A Hugging Face tokenizer.json (model.type "BPE"). tokenizer_config.json and
// generation_config.json beside it, when present, give BOS/EOS/EOG ids.
std::unique_ptr<Tokenizer> load_tokenizer_hf_json(const std::string& path);
// A llama2.c tokenizer .bin; its vocabulary size comes from the checkpoint header.
std::unique_ptr<Tokenizer> load_tokenizer_llama2c(const std::string& path, int vocab_size);

// The GPT-2 byte-level stand-in of a byte: printable bytes 33-126, 161-172, 174-255 map to
// themselves, the other 68 to U+0100.. in byte order (space -> U+0120 "Ġ", '\n' -> U+010A "Ċ").
uint32_t byte_to_standin(uint8_t b);
// The byte a stand-in code point represents, or -1.
int standin_to_byte(uint32_t cp);
// The byte of a byte-fallback token's text "<0xXX>" (hex digits of either case), or -1.
int parse_byte_token(std::string_view text);

}  // namespace glimpse
