#include "text/model_files.h"

#include <filesystem>

#include "core/error.h"
#include "text/chat_template.h"
#include "text/llama_model.h"
#include "text/tokenizer.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"

namespace glimpse {

namespace {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> open_tokenizer(const LlamaModel& m, const std::string& flag) {
    if (!flag.empty() && m.format != LlamaFormat::Llama2c)
        throw Error(ErrorKind::Usage, "--tokenizer is for llama2.c checkpoints only (" + m.path + " carries its own)");
    switch (m.format) {
        case LlamaFormat::Gguf: return load_tokenizer_gguf(*m.gguf);
        case LlamaFormat::HfFolder:
            if (!m.hf->has_tokenizer_json()) throw model_error(m.path, "has no tokenizer.json");
            return load_tokenizer_hf_json(m.hf->tokenizer_json_path());
        case LlamaFormat::Llama2c: {
            if (!flag.empty()) return load_tokenizer_llama2c(flag, m.config.n_vocab);
            const fs::path dir = fs::path(m.path).parent_path();
            for (const std::string& name : {"tok" + std::to_string(m.config.n_vocab) + ".bin", std::string("tokenizer.bin")}) {
                std::error_code ec;
                if (fs::is_regular_file(dir / name, ec)) return load_tokenizer_llama2c((dir / name).string(), m.config.n_vocab);
            }
            throw Error(ErrorKind::Usage, m.path + ": a llama2.c checkpoint has no vocabulary; pass its tokenizer with "
                                                   "--tokenizer tok.bin");
        }
    }
    throw Error(ErrorKind::Model, m.path + ": unknown model format");
}

}  // namespace

std::unique_ptr<Tokenizer> load_model_tokenizer(const LlamaModel& m, const std::string& llama2c_tokenizer) {
    auto tok = open_tokenizer(m, llama2c_tokenizer);
    if (tok->n_vocab() > m.config.n_vocab)
        throw model_error(m.path, "the tokenizer has " + std::to_string(tok->n_vocab()) +
                                      " tokens but the model only " + std::to_string(m.config.n_vocab));
    return tok;
}

std::string model_chat_template_text(const LlamaModel& m) {
    if (m.gguf) return m.gguf->str_or("tokenizer.chat_template", "");
    if (m.hf) return hf_chat_template_text(m.hf->dir());
    return "";
}

}  // namespace glimpse
