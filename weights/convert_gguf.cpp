// The converter's plumbing: output types, the Q/K row permutation, writing a plan tensor by
// tensor, re-quantizing a GGUF file, and convert_model, which decides what the input is.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/quant.h"
#include "weights/convert.h"
#include "weights/gguf.h"
#include "weights/hf_folder.h"
#include "weights/llama2c.h"
#include "weights/safetensors.h"  // message_safe

namespace glimpse {

namespace fs = std::filesystem;

DType parse_convert_type(const std::string& name) {
    std::string s = name;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (s == "f32") return DType::F32;
    if (s == "f16") return DType::F16;
    if (s == "q8_0") return DType::Q8_0;
    if (s == "q4_0") return DType::Q4_0;
    if (s == "q4_k") return DType::Q4_K;
    throw Error(ErrorKind::Usage, "--type '" + message_safe(name) + "' is not supported (use f32, f16, q8_0, q4_0 or q4_k)");
}

uint32_t gguf_file_type(DType t) {
    switch (t) {  // llama_ftype (llama.h): ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q8_0 7, Q4_K_S 14
        case DType::F32: return 0;
        case DType::F16: return 1;
        case DType::Q4_0: return 2;
        case DType::Q8_0: return 7;
        case DType::Q4_K: return 14;
        case DType::BF16: return 32;
        default: return 0;
    }
}

DType fallback_type(DType want, int64_t row_len) {
    auto fits = [&](DType t) { return row_len % int64_t(dtype_info(t).block_elems) == 0; };
    if (fits(want)) return want;
    if (want == DType::Q4_K && fits(DType::Q5_0)) return DType::Q5_0;  // llama-quantize's choice
    return want == DType::F32 ? DType::F32 : DType::F16;
}

int64_t rope_permuted_row(int64_t r, int64_t rows, int n_heads) {
    const int64_t d = rows / n_heads;  // head size (even: checked by the loaders)
    const int64_t h = r / d, j = r % d;
    const int64_t i = j / 2, p = j % 2;
    return h * d + p * (d / 2) + i;
}

void check_output_path(const std::string& path, const ConvertOptions& opt) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) throw input_error(path, "is a folder; give the output file name");
    if (fs::exists(path, ec) && !opt.force) throw input_error(path, "already exists (pass --force to overwrite it)");
}

namespace detail {

DType matrix_type(const std::string& name, int64_t row_len, DType want, GgufPlan& plan) {
    const DType t = fallback_type(want, row_len);
    if (t != want)
        plan.fallbacks["rows of " + std::to_string(row_len) + " values, not a multiple of the " +
                       std::string(dtype_name(want)) + " block size " + std::to_string(dtype_info(want).block_elems) +
                       ": stored as " + std::string(dtype_name(t))]
            .push_back(name);
    return t;
}

}  // namespace detail

namespace {

uint64_t padded(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

uint64_t tensor_bytes(const PlannedTensor& p) {
    const auto row = dtype_row_bytes(p.type, uint64_t(p.src.ne[0]));
    if (!row) throw model_error(p.name, "row length " + std::to_string(p.src.ne[0]) + " is not a whole number of " +
                                            std::string(dtype_name(p.type)) + " blocks");
    return *row * uint64_t(p.src.rows());
}

// The output bytes of one tensor: copied when nothing changes, else row by row through f32.
std::vector<uint8_t> convert_tensor(const PlannedTensor& p) {
    const Tensor& s = p.src;
    const int64_t rows = s.rows(), n = s.ne[0];
    const bool simple_rows = s.contiguous() || (s.ne[2] == 1 && s.ne[3] == 1);
    if (!simple_rows) throw model_error(p.name, "source tensor '" + message_safe(s.name) + "' is not contiguous");
    std::vector<uint8_t> out(tensor_bytes(p));
    const uint64_t out_row = rows ? out.size() / uint64_t(rows) : 0;
    const uint64_t src_row = dtype_row_bytes(s.dtype, uint64_t(n)).value_or(0);
    if (s.dtype == p.type && p.rope_heads == 0) {
        for (int64_t r = 0; r < rows; ++r) std::memcpy(out.data() + uint64_t(r) * out_row, s.row(r), src_row);
        return out;
    }
    if (!dtype_info(s.dtype).computable)
        throw model_error(p.name, "source type " + std::string(dtype_name(s.dtype)) + " cannot be converted");
    std::vector<float> buf(size_t(std::max<int64_t>(n, 1)));
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t from = p.rope_heads > 0 ? rope_permuted_row(r, rows, p.rope_heads) : r;
        dequantize_row(s.dtype, s.row(from), buf.data(), n);
        quantize_row(p.type, buf.data(), out.data() + uint64_t(r) * out_row, n);
    }
    return out;
}

// Progress for big outputs: one line per 10 % (stderr may be a log file, so no \r tricks).
class Progress {
public:
    Progress(const ConvertOptions& opt, std::string path, uint64_t total)
        : opt_(opt), path_(std::move(path)), total_(total) {}
    void done(uint64_t bytes, size_t i, size_t n) {
        done_ += bytes;
        if (!opt_.log || total_ < (64ull << 20)) return;
        const int pct = int(100 * done_ / total_);
        if (pct / 10 == last_ / 10 && i + 1 != n) return;
        last_ = pct;
        opt_.log("convert: " + path_ + ": " + std::to_string(pct) + "% (" + std::to_string(i + 1) + "/" +
                 std::to_string(n) + " tensors, " + std::to_string(done_ >> 20) + " MiB)");
    }

private:
    const ConvertOptions& opt_;
    std::string path_;
    uint64_t total_, done_ = 0;
    int last_ = -1;
};

}  // namespace

// The writer lays the file out (header, tensor infos, zero-filled data) from a zero buffer as
// large as the largest tensor; each tensor is then converted on its own and written in place.
// The data section starts where the file's size minus the padded tensor sizes says.
void write_gguf_plan(const GgufPlan& plan, const std::string& path, const ConvertOptions& opt) {
    if (opt.log)
        for (const auto& [what, names] : plan.fallbacks) {
            std::string list;
            for (size_t i = 0; i < names.size() && i < 3; ++i) list += (i ? ", " : "") + names[i];
            if (names.size() > 3) list += ", ...";
            opt.log("note: " + std::to_string(names.size()) + (names.size() == 1 ? " matrix has " : " matrices have ") +
                    what + " (" + list + ")");
        }
    GgufWriter w = plan.meta;
    uint64_t max_bytes = 1, data_bytes = 0;
    std::vector<uint64_t> sizes;
    for (const PlannedTensor& p : plan.tensors) {
        sizes.push_back(tensor_bytes(p));
        max_bytes = std::max(max_bytes, sizes.back());
        data_bytes += padded(sizes.back(), w.alignment());
    }
    auto zeros = std::shared_ptr<const void>(new uint8_t[max_bytes](), std::default_delete<uint8_t[]>());
    for (const PlannedTensor& p : plan.tensors) {
        Tensor z;
        z.name = p.name;
        z.dtype = p.type;
        z.n_dims = p.src.n_dims;
        z.ne = p.src.ne;
        z.nb = contiguous_strides(p.type, z.ne);
        z.data = zeros.get();
        z.storage = zeros;
        w.add_tensor(z);
    }
    const std::string tmp = path + ".tmp";
    auto remove_tmp = [&] {
        std::error_code ec;
        fs::remove(tmp, ec);
    };
    try {
        w.write(tmp);
        std::error_code ec;
        const uint64_t file_size = fs::file_size(tmp, ec);
        if (ec || file_size < data_bytes) throw input_error(tmp, "cannot read back the file just written");
        uint64_t offset = file_size - data_bytes;
        std::fstream f(tmp, std::ios::in | std::ios::out | std::ios::binary);
        if (!f) throw input_error(tmp, "cannot reopen for writing");
        Progress progress(opt, path, data_bytes);
        for (size_t i = 0; i < plan.tensors.size(); ++i) {
            const std::vector<uint8_t> bytes = convert_tensor(plan.tensors[i]);
            f.seekp(std::streamoff(offset));
            f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
            if (!f) throw input_error(tmp, "writing tensor '" + plan.tensors[i].name + "' failed");
            offset += padded(sizes[i], w.alignment());
            progress.done(sizes[i], i, plan.tensors.size());
        }
        f.close();
        if (!f) throw input_error(tmp, "closing the file failed");
        fs::rename(tmp, path, ec);
        if (ec) throw input_error(path, "cannot rename " + tmp + " to it: " + ec.message());
    } catch (...) {
        remove_tmp();
        throw;
    }
}

// ---- GGUF -> GGUF -------------------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama.cpp's rule for text models: 2-D ".weight" matrices take the asked type, the rest F32.
// In mmproj (clip) files the matrices are F16 (or F32) and the patch / position embeddings keep
// their type, as the HF converter writes them.
DType requant_type(const GgufFile& f, const Tensor& t, DType want, GgufPlan& plan) {
    const bool clip = f.str_or("general.architecture", "") == "clip";
    if (!dtype_info(t.dtype).computable || t.n_dims >= 3) return t.dtype;
    if (t.n_dims == 1 || !ends_with(t.name, ".weight")) return DType::F32;
    if (clip) {
        if (t.name == "v.patch_embd.weight" || t.name == "v.position_embd.weight") return t.dtype;
        return want == DType::F32 ? DType::F32 : DType::F16;
    }
    return detail::matrix_type(t.name, t.ne[0], want, plan);
}

}  // namespace

namespace detail {

GgufPlan plan_requantize(const GgufFile& f, const ConvertOptions& opt) {
    GgufPlan plan;
    for (const auto& kv : f.metadata()) {
        if (kv.key == "general.alignment") plan.meta.set_alignment(f.u32("general.alignment"));
        else plan.meta.set(kv.key, kv.value);
    }
    const bool clip = f.str_or("general.architecture", "") == "clip";
    const DType file_type = clip && opt.type != DType::F32 ? DType::F16 : opt.type;
    plan.meta.set_u32("general.file_type", gguf_file_type(file_type));
    plan.meta.set_u32("general.quantization_version", 2);
    for (const Tensor& t : f.tensors()) {
        const DType type = requant_type(f, t, opt.type, plan);
        plan.tensors.push_back({t.name, t, type, 0});
    }
    return plan;
}

}  // namespace detail

// ---- What the input is ----------------------------------------------------------------------------

namespace {

bool is_gguf_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

std::string default_mmproj_path(const std::string& out) {
    const fs::path p(out);
    return (p.parent_path() / ("mmproj-" + p.filename().string())).string();
}

}  // namespace

ConvertResult convert_model(const std::string& in, const std::string& out, const ConvertOptions& opt) {
    std::error_code ec;
    if (!fs::exists(in, ec)) throw input_error(in, "no such file or folder");
    if (out.empty()) throw Error(ErrorKind::Usage, "no output file given (-o OUT.gguf)");
    if (fs::exists(out, ec) && fs::equivalent(in, out, ec))
        throw Error(ErrorKind::Usage, out + ": the output would overwrite the input");
    check_output_path(out, opt);
    ConvertResult result;

    if (fs::is_directory(in, ec)) {
        if (!HfFolder::looks_like(in)) throw model_error(in, "is a folder without config.json (not a Hugging Face model)");
        if (!opt.tokenizer.empty())
            throw Error(ErrorKind::Usage, "--tokenizer is for llama2.c checkpoints (" + in + " has tokenizer.json)");
        const auto folder = std::make_shared<const HfFolder>(HfFolder::open(in));
        const std::string arch = folder->architecture();
        result.input_kind = "Hugging Face " + (arch.empty() ? folder->model_type() : arch);
        const detail::VisionKind vision = detail::hf_vision_kind(*folder);
        std::string mmproj;
        if (vision != detail::VisionKind::None) {
            mmproj = opt.mmproj_out.empty() ? default_mmproj_path(out) : opt.mmproj_out;
            if (fs::exists(mmproj, ec) && fs::equivalent(mmproj, out, ec))
                throw Error(ErrorKind::Usage, mmproj + ": the mmproj output is the text output");
            check_output_path(mmproj, opt);
        } else if (!opt.mmproj_out.empty()) {
            throw Error(ErrorKind::Usage, "--mmproj-out: " + in + " has no vision tower (" + result.input_kind + ")");
        }
        // Both plans first: a broken vision tower is reported before anything is written.
        const GgufPlan text = detail::plan_hf_text(folder, opt);
        const GgufPlan vis = vision != detail::VisionKind::None ? detail::plan_hf_mmproj(*folder, vision, opt) : GgufPlan{};
        write_gguf_plan(text, out, opt);
        result.written.push_back(out);
        result.n_tensors += int(text.tensors.size());
        if (vision != detail::VisionKind::None) {
            write_gguf_plan(vis, mmproj, opt);
            result.written.push_back(mmproj);
            result.n_tensors += int(vis.tensors.size());
        }
        return result;
    }
    if (!opt.mmproj_out.empty()) throw Error(ErrorKind::Usage, "--mmproj-out is for Hugging Face VLM folders");
    if (is_gguf_file(in)) {
        if (!opt.tokenizer.empty()) throw Error(ErrorKind::Usage, "--tokenizer is for llama2.c checkpoints (" + in + " is a GGUF file)");
        const GgufFile f = GgufFile::open(in);
        result.input_kind = "GGUF";
        const GgufPlan plan = detail::plan_requantize(f, opt);
        write_gguf_plan(plan, out, opt);
        result.written.push_back(out);
        result.n_tensors = int(plan.tensors.size());
        return result;
    }
    if (Llama2cCheckpoint::looks_like(in)) {
        result.input_kind = "llama2.c";
        const GgufPlan plan = detail::plan_llama2c(in, opt);
        write_gguf_plan(plan, out, opt);
        result.written.push_back(out);
        result.n_tensors = int(plan.tensors.size());
        return result;
    }
    throw model_error(in, "is not a GGUF file, a llama2.c checkpoint or a Hugging Face folder");
}

}  // namespace glimpse
