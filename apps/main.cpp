// glimpse: the command line. Parses arguments, runs one subcommand, and turns library errors
// into one line on stderr and an exit code (DESIGN.md: 1 usage, 2 bad input, 3 model, 4 device).
#include <cstdio>
#include <exception>
#include <vector>

#include "apps/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
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
