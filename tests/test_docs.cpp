// Doc tests: every command shown in docs/how-it-works.md and docs/ru/how-it-works.md is run
// with the built binary from the repository root, and its output (stdout and stderr together,
// as a terminal shows them) must be the one the page shows, so the pages cannot rot.
//
// How a page marks them (docs/how-it-works.md, "About the examples", says the same):
//   ```sh                    a shell block: every non-empty line is a command "$ glimpse ..."
//   $ glimpse describe ...   ("glimpse" is replaced by the built binary; a line may pipe into it,
//   ```                       "printf '...' | glimpse ask ...", or set a variable first, "x=...; glimpse")
//   ```                      the very next block is the output, compared line by line:
//   ...                       "…" inside a line stands for any text (timings, paths), a line
//   ```                       that is only "…" for any number of lines.
// A command must exit 0 unless its line ends with "# exit N".
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/helpers.h"

namespace fs = std::filesystem;

namespace {

const fs::path kSource = GLIMPSE_SOURCE_DIR;
const std::string kEllipsis = "\xE2\x80\xA6";  // …

struct DocCommand {
    int line = 0;             // in the page, 1-based
    std::string command;      // as shown, without "$ "
    int exit_code = 0;
    std::vector<std::string> expected;
};

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> lines;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

// The fenced blocks of a Markdown page: (info string, first line number, lines).
struct Block {
    std::string info;
    int line = 0;
    std::vector<std::string> lines;
};

std::vector<Block> fenced_blocks(const std::vector<std::string>& page) {
    std::vector<Block> blocks;
    for (size_t i = 0; i < page.size(); ++i) {
        if (page[i].rfind("```", 0) != 0) continue;
        Block b{page[i].substr(3), int(i) + 1, {}};
        for (++i; i < page.size() && page[i].rfind("```", 0) != 0; ++i) b.lines.push_back(page[i]);
        if (i == page.size()) FAIL("unclosed ``` block at line " << b.line);
        b.line = int(i) + 1;  // the closing fence: the output block must come right after it
        blocks.push_back(std::move(b));
    }
    return blocks;
}

std::vector<DocCommand> doc_commands(const fs::path& page_path) {
    std::ifstream f(page_path);
    REQUIRE(f.good());
    std::stringstream ss;
    ss << f.rdbuf();
    const std::vector<std::string> page = split_lines(ss.str());
    const std::vector<Block> blocks = fenced_blocks(page);
    std::vector<DocCommand> cmds;
    for (size_t b = 0; b < blocks.size(); ++b) {
        if (blocks[b].info != "sh") continue;
        INFO(page_path.filename().string() << ": shell block ending at line " << blocks[b].line);
        std::vector<std::string> lines;
        for (const std::string& l : blocks[b].lines) {
            if (l.empty()) continue;
            REQUIRE(l.rfind("$ ", 0) == 0);  // every line of a sh block is a command
            lines.push_back(l.substr(2));
        }
        REQUIRE(lines.size() == 1);  // one command, then its output
        // The output block: the next block, with nothing but blank lines between.
        REQUIRE(b + 1 < blocks.size());
        const Block& out = blocks[b + 1];
        REQUIRE(out.info.empty());
        const int out_start = out.line - int(out.lines.size()) - 1;  // its opening fence
        for (int i = blocks[b].line; i < out_start - 1; ++i) REQUIRE(page[size_t(i)].empty());
        DocCommand c;
        c.line = blocks[b].line - 1;
        c.command = lines[0];
        const size_t hash = c.command.find("# exit ");
        if (hash != std::string::npos) {
            c.exit_code = std::stoi(c.command.substr(hash + 7));
            c.command.erase(hash);
        }
        c.expected = out.lines;
        cmds.push_back(std::move(c));
    }
    return cmds;
}

// The command with `glimpse` (at the start, or after a pipe or a `;`) replaced by the built binary.
std::string with_binary(const std::string& cmd) {
    const std::string bin = glimpse::test::shell_quote(GLIMPSE_BINARY);
    std::string out;
    size_t pos = 0;
    while (pos < cmd.size()) {
        const bool at_word =
            pos == 0 || (pos >= 2 && (cmd.compare(pos - 2, 2, "| ") == 0 || cmd.compare(pos - 2, 2, "; ") == 0));
        if (at_word && cmd.compare(pos, 8, "glimpse ") == 0) {
            out += bin + " ";
            pos += 8;
        } else {
            out += cmd[pos++];
        }
    }
    return out;
}

// Runs cmd from the repository root; stdout and stderr together.
std::string run_shell(const std::string& cmd, int& exit_code) {
    const std::string full = "cd " + glimpse::test::shell_quote(kSource.string()) + " && (" + with_binary(cmd) +
                             ") 2>&1 </dev/null";
    std::FILE* p = popen(full.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    return out;
}

// Does `got` fit the pattern line (… = any text)?
bool line_matches(const std::string& pattern, const std::string& got) {
    std::vector<std::string> parts;
    size_t from = 0, at;
    while ((at = pattern.find(kEllipsis, from)) != std::string::npos) {
        parts.push_back(pattern.substr(from, at - from));
        from = at + kEllipsis.size();
    }
    parts.push_back(pattern.substr(from));
    if (parts.size() == 1) return pattern == got;
    if (got.compare(0, parts.front().size(), parts.front()) != 0) return false;
    size_t pos = parts.front().size();
    for (size_t i = 1; i + 1 < parts.size(); ++i) {
        pos = got.find(parts[i], pos);
        if (pos == std::string::npos) return false;
        pos += parts[i].size();
    }
    const std::string& last = parts.back();
    return got.size() >= pos + last.size() && got.compare(got.size() - last.size(), last.size(), last) == 0;
}

// Line-by-line match; a pattern line that is only "…" takes any number of lines.
bool output_matches(const std::vector<std::string>& want, size_t wi, const std::vector<std::string>& got, size_t gi) {
    if (wi == want.size()) return gi == got.size();
    if (want[wi] == kEllipsis) {
        for (size_t k = gi; k <= got.size(); ++k)
            if (output_matches(want, wi + 1, got, k)) return true;
        return false;
    }
    return gi < got.size() && line_matches(want[wi], got[gi]) && output_matches(want, wi + 1, got, gi + 1);
}

void check_page(const fs::path& page) {
    const std::vector<DocCommand> cmds = doc_commands(page);
    REQUIRE(cmds.size() >= 10);
    for (const DocCommand& c : cmds) {
        INFO(page.filename().string() << " line " << c.line << ": $ " << c.command);
        int code = -1;
        const std::string out = run_shell(c.command, code);
        INFO("output:\n" << out);
        CHECK(code == c.exit_code);
        CHECK(output_matches(c.expected, 0, split_lines(out), 0));
    }
}

}  // namespace

TEST_CASE("docs: the placeholder rules of the doc tests", "[docs]") {
    CHECK(line_matches("abc", "abc"));
    CHECK_FALSE(line_matches("abc", "abcd"));
    CHECK(line_matches("took … ms", "took 12.5 ms"));
    CHECK_FALSE(line_matches("took … ms", "took 12.5 s"));
    CHECK(line_matches("…", ""));
    CHECK(line_matches("a…b…c", "a1b2c"));
    CHECK_FALSE(line_matches("a…b…c", "a1c"));
    CHECK(output_matches({"x", kEllipsis, "z"}, 0, {"x", "1", "2", "z"}, 0));
    CHECK(output_matches({"x", kEllipsis, "z"}, 0, {"x", "z"}, 0));
    CHECK_FALSE(output_matches({"x", kEllipsis, "z"}, 0, {"x", "1"}, 0));
    CHECK(with_binary("printf 'hi' | glimpse ask x.png").find("| glimpse") == std::string::npos);
}

TEST_CASE("docs: every command in docs/how-it-works.md prints what the page shows", "[docs]") {
    check_page(kSource / "docs" / "how-it-works.md");
}

TEST_CASE("docs: every command in docs/ru/how-it-works.md prints what the page shows", "[docs]") {
    check_page(kSource / "docs" / "ru" / "how-it-works.md");
}

TEST_CASE("docs: the Russian page runs every command of the English one", "[docs]") {
    const auto en = doc_commands(kSource / "docs" / "how-it-works.md");
    const auto ru = doc_commands(kSource / "docs" / "ru" / "how-it-works.md");
    for (const DocCommand& c : en) {
        INFO("$ " << c.command);
        CHECK(std::any_of(ru.begin(), ru.end(), [&](const DocCommand& r) { return r.command == c.command; }));
    }
}
