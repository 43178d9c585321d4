// What a loaded decoder's files carry besides the weights: its tokenizer and its chat
// template text, found the same way for every format.
#pragma once

#include <memory>
#include <string>

namespace glimpse {

class Tokenizer;
struct LlamaModel;

// The tokenizer that belongs to the model: inside the GGUF, the folder's tokenizer.json, or
// for a llama2.c checkpoint `llama2c_tokenizer` (default: tok<vocab>.bin, then tokenizer.bin,
// beside the checkpoint). Error(Usage) for a llama2.c checkpoint without one, or a tokenizer
// path given for a model that carries its own; Error(Model) when the vocabulary is larger
// than the model's embedding table.
std::unique_ptr<Tokenizer> load_model_tokenizer(const LlamaModel& m, const std::string& llama2c_tokenizer = "");

// GGUF tokenizer.chat_template, or the folder's chat_template.json / tokenizer_config.json;
// "" if none.
std::string model_chat_template_text(const LlamaModel& m);

}  // namespace glimpse
