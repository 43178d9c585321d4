// glimpse: the command line. Parses arguments, runs one subcommand, and turns library errors
// into one line on stderr and an exit code (DESIGN.md: 1 usage, 2 bad input, 3 model, 4 device).
#include <cstdio>
#include <exception>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "apps/commands.h"
#include "core/error.h"

namespace {

// glibc hands freed memory back to the kernel once more than ~2x its mmap threshold (128 KiB
// at first, raised as blocks are freed) sits free at the top of a heap, and a caption lane
// allocates and frees a decoded picture and its tiles (~200 KB each at 256x256) per image: the
// next image faulted the same pages in again (47,000 page faults and 0.15-0.20 s of system
// time for 512 images). Blocks under 32 MiB now come from the heaps, and up to 64 MiB of free
// heap top is kept for reuse (12,000 faults, 0.05-0.08 s; peak RSS +1.3 MB).
void tune_allocator() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    tune_allocator();
    CLI::App app{
        "glimpse: a runtime for vision-language models.\n"
        "A ViT cuts an image into patches and encodes them, a projector maps them into the\n"
        "language model's token space, and the language model answers.",
        "glimpse"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "glimpse 0.1.0");

    std::vector<glimpse::app::Command> commands = {
        glimpse::app::add_describe(app),
        glimpse::app::add_generate(app),
        glimpse::app::add_tokenize(app),
        glimpse::app::add_info(app),
        glimpse::app::add_bench(app),
        glimpse::app::add_devices(app),
        glimpse::app::add_convert(app),
        glimpse::app::add_caption(app),
        glimpse::app::add_ask(app),
        glimpse::app::add_eval_scenes(app),
        glimpse::app::add_serve(app),
        glimpse::app::add_inspect(app),
    };

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : static_cast<int>(glimpse::ErrorKind::Usage);
    }

    try {
        for (auto& c : commands)
            if (c.sub->parsed()) return c.run();
    } catch (const glimpse::Error& e) {
        std::fprintf(stderr, "glimpse: %s\n", e.what());
        return e.exit_code();
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "glimpse: out of memory\n");
        return static_cast<int>(glimpse::ErrorKind::BadInput);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "glimpse: internal error: %s\n", e.what());
        return 70;
    }
    return 0;
}
