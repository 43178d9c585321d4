#include "apps/commands.h"
namespace glimpse::app {
Command add_info(CLI::App& app) {
    auto* sub = app.add_subcommand("info", "metadata and tensor table of a weight file");
    return {sub, [] { return 0; }};
}
}  // namespace glimpse::app
