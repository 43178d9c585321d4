// Each `glimpse` subcommand lives in its own apps/cmd_*.cpp and registers itself here.
// A command's callback returns the process exit code (0 ok; DESIGN.md lists the others) and
// throws glimpse::Error for failures, which main() prints as one line.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace glimpse::app {

using Runner = std::function<int()>;

// Adds the subcommand to `app` and returns what runs it once the arguments are parsed.
struct Command {
    CLI::App* sub = nullptr;
    Runner run;
};

Command add_info(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_describe(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_devices(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_caption(CLI::App& app);
Command add_ask(CLI::App& app);
Command add_eval_scenes(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_inspect(CLI::App& app);

}  // namespace glimpse::app
