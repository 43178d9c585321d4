#include "apps/commands.h"
namespace glimpse::app {
Command add_bench(CLI::App& app) {
    auto* sub = app.add_subcommand("bench", "benchmarks");
    return {sub, [] { return 0; }};
}
}  // namespace glimpse::app
