// `glimpse convert IN -o OUT.gguf [--type f16]`: writes GGUF from a GGUF file (re-quantized),
// a Hugging Face folder (Llama text models; SmolVLM/Idefics3 and LLaVA folders give the text
// GGUF plus an mmproj GGUF) or a llama2.c checkpoint with its tokenizer. weights/convert.h
// says what is written; docs/CONVERT.md has examples.
//
// stdout: one line per file written. stderr: notes (tensors that keep a wider type) and, for
// big files, progress lines.
#include <cstdio>
#include <memory>
#include <string>

#include "apps/commands.h"
#include "weights/convert.h"

namespace glimpse::app {

namespace {

struct ConvertArgs {
    std::string in, out, type = "f16", tokenizer, mmproj_out;
    bool force = false;
};

int run_convert(const ConvertArgs& a) {
    ConvertOptions opt;
    opt.type = parse_convert_type(a.type);
    opt.force = a.force;
    opt.tokenizer = a.tokenizer;
    opt.mmproj_out = a.mmproj_out;
    opt.log = [](const std::string& line) { std::fprintf(stderr, "glimpse: %s\n", line.c_str()); };
    const ConvertResult r = convert_model(a.in, a.out, opt);
    for (const std::string& f : r.written) std::printf("wrote %s\n", f.c_str());
    std::fprintf(stderr, "glimpse: converted %s (%s) to %s, %d tensors\n", a.in.c_str(), r.input_kind.c_str(),
                 a.type.c_str(), r.n_tensors);
    return 0;
}

}  // namespace

Command add_convert(CLI::App& app) {
    auto a = std::make_shared<ConvertArgs>();
    auto* sub = app.add_subcommand("convert", "Write a GGUF file (and an mmproj for VLMs) from another model file");
    sub->footer(
        "IN: a GGUF file (re-quantized), a Hugging Face folder (LlamaForCausalLM; SmolVLM/Idefics3 and\n"
        "Llava folders also write the vision tower to an mmproj file), or a llama2.c checkpoint.\n"
        "Matrices take --type (norms and biases stay F32; mmproj matrices are F16, or F32 with f32).\n"
        "Example: glimpse convert stories260K.bin --tokenizer tok512.bin -o stories260K.gguf --type f32");
    sub->add_option("input", a->in, "model file or folder to convert")->required();
    sub->add_option("-o,--output", a->out, "the GGUF file to write")->required();
    sub->add_option("--type", a->type, "f32, f16, q8_0, q4_0 or q4_k (default f16)");
    sub->add_flag("--force", a->force, "overwrite existing output files");
    sub->add_option("--tokenizer", a->tokenizer, "llama2.c tokenizer file (tok512.bin, tokenizer.bin)");
    sub->add_option("--mmproj-out", a->mmproj_out, "where a VLM's vision tower goes (default: mmproj-<OUT> beside OUT)");
    return {sub, [a] { return run_convert(*a); }};
}

}  // namespace glimpse::app
