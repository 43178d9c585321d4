// The model side of `glimpse caption` (and of `glimpse bench --caption`): a list of image
// files in, one result line per file out, with the three kinds of overlap that make a folder
// of images go faster than one image at a time:
//
//   worker thread:  read + decode + preprocess (tiles) image i+1, i+2, ...   (bounded queue)
//   model thread:   take up to `batch` images ─ encode all their tiles, several images per
//                   encoder batch ─ prefill their prompts together, each into its own
//                   LlamaContext (LlamaBatch::prefill) ─ decode the captions together, one
//                   LlamaBatch step for every caption still going, each stopping at its own
//                   stop token / stop string / max tokens
//
// A model so small that its weights sit in the cores' caches (the default model: 1 M
// parameters) gains nothing from sharing a weight read between captions and loses most of
// its time handing each tiny matmul to the threads (a 96-wide layer is a few microseconds of
// work, a hand-off about as much). For such a model the work is cut into `lanes`, one per
// thread: each lane takes its next batch/lanes files as soon as it is done with the last ones,
// and reads, encodes, prefills and decodes them alone on its thread, every op inline. No lane
// waits for another, and there is no worker thread then: the lanes keep the cores busy, and a
// third thread would only take turns with them (CaptionSettings::lanes; 0 picks: one lane per
// thread for a small model on the CPU, else one).
//
// Results are reported as they complete: in input order with batch 1, else in the order the
// captions finish. The caption of an image does not depend on the batch or lane it was in:
// every step computes each sequence exactly as it would alone (text/llama_batch.h), the
// encoder computes each tile independently of the others in its batch, and each image gets
// its own freshly seeded sampler.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/caption_inputs.h"
#include "core/thread_pool.h"
#include "fusion/vlm.h"
#include "text/llama_batch.h"
#include "text/sampler.h"

namespace glimpse::app {

// Images per batch when --batch is not given. On the default model 4, 8 and 16 measured
// within the noise of each other on 2 cores (docs/PERFORMANCE.md, "Captioning a folder");
// memory grows with it (each image in flight holds its tiles and its KV cache: ~105 MiB for a
// 512x512 photo with SmolVLM-256M), so 8 rather than 16.
constexpr int kDefaultCaptionBatch = 8;

struct CaptionSettings {
    std::string prompt = "Describe this image.";
    std::optional<std::string> system = std::string();  // "" = none, nullopt = the template's default
    SamplerParams sampling;
    int max_tokens = 256;
    std::vector<std::string> stops;
    ImageOptions image;
    int batch = 1;  // images captioned together (>= 1)
    int lanes = 0;  // this many lanes of batch/lanes images, one thread each (0: auto; see above)
    int ctx = 0;    // context per image (0: the model's, at most 4096)
};

// Where the time went, summed over the run.
struct CaptionStats {
    size_t captioned = 0, failed = 0;
    int64_t tiles = 0, prompt_positions = 0, generated = 0;
    double encode_ms = 0, prefill_ms = 0, decode_ms = 0;  // model thread (with lanes: summed over them)
    double read_ms = 0;                                   // worker: file → tiles

    CaptionStats& operator+=(const CaptionStats& o) {
        captioned += o.captioned, failed += o.failed;
        tiles += o.tiles, prompt_positions += o.prompt_positions, generated += o.generated;
        encode_ms += o.encode_ms, prefill_ms += o.prefill_ms, decode_ms += o.decode_ms;
        read_ms += o.read_ms;
        return *this;
    }
};

class CaptionEngine {
public:
    CaptionEngine(const VlmModel& m, ThreadPool& pool, CaptionSettings s);
    ~CaptionEngine();
    CaptionEngine(const CaptionEngine&) = delete;
    CaptionEngine& operator=(const CaptionEngine&) = delete;

    // Captions every input and calls on_result(i, line) once per input i, one call at a time
    // (with lanes, from whichever lane's thread finished the image):
    //   {"file", "caption", "tokens", "ms"}   or   {"file", "error"}
    // "ms" is the image's share of the run's wall time (its read, its tiles' share of the
    // encoder batches, its prefill, and its share of every decode step it took part in). A bad
    // file (an input error, an unreadable or undecodable image, a prompt that does not fit the
    // context) gives an error line and the run goes on; Error(Model) / Error(Device) and
    // exceptions from on_result end it (rethrown here).
    void run(const std::vector<CaptionInput>& inputs,
             const std::function<void(size_t index, const nlohmann::ordered_json& line)>& on_result);

    const CaptionStats& stats() const { return stats_; }
    int lanes() const { return lanes_; }  // as chosen (1: every op shared by the threads)

    struct Prepared;  // an image as the worker hands it over (caption_engine.cpp)
    struct Sequence;  // one caption being written
    class Reader;     // files → Prepared, on the worker thread or on the lane that asks

private:
    using Emit = std::function<void(size_t, const nlohmann::ordered_json&)>;
    void run_lane(Reader& reader, int lane, CaptionStats& st, const Emit& on_result,
                  const std::atomic<bool>* failed = nullptr);
    // A group of images captioned together: they use the contexts from slot0 on.
    void caption_group(std::vector<Prepared>& batch, size_t slot0, LlamaBatch& decoder, CaptionStats& st,
                       const Emit& on_result);
    void encode_batch(std::vector<Prepared>& batch, std::vector<EncodedImage>& out, std::vector<double>& ms,
                      CaptionStats& st);

    const VlmModel& m_;
    ThreadPool& pool_;
    CaptionSettings s_;
    int lanes_ = 1;
    std::vector<std::unique_ptr<LlamaContext>> ctxs_;    // one per batch slot
    std::vector<std::unique_ptr<LlamaBatch>> decoders_;  // one per lane
    CaptionStats stats_;
};

}  // namespace glimpse::app
