// What `glimpse caption` reads and resumes from: the list of images named on the command line
// (files, folders searched recursively by image extension, glob patterns, @list files), the
// deterministic shard a file belongs to, and the set of files an earlier, possibly killed,
// run already wrote to the JSONL output.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace glimpse::app {

// One input: a path to caption, or a name that could not be expanded (a missing file, an
// unreadable list, a pattern matching nothing), which becomes an error line in the output.
struct CaptionInput {
    std::string path;
    std::string error;  // "" = ok
};

// true for .jpg .jpeg .png .bmp .gif .webp .tif .tiff (case-insensitive): what a folder
// search picks up. Files named directly are taken whatever their extension.
bool has_image_extension(const std::string& path);

// Expands each argument, in order: "@FILE" = one path per line of FILE (blank lines and lines
// starting with '#' skipped, each line expanded like an argument except '@'), a folder =
// every image file under it (recursive, sorted), a pattern with * ? [ = glob(3) matches
// (sorted; folders among them searched), anything else = that file. Duplicates (same path
// string) are kept once, first occurrence wins.
std::vector<CaptionInput> expand_caption_inputs(const std::vector<std::string>& args);

// The shard (0 .. n-1) of a path: FNV-1a 64 of the path string, mod n. Depends on nothing
// but the string, so every machine given the same list splits it the same way and the N
// shards partition it exactly.
uint32_t shard_of(const std::string& path, uint32_t n);

// Parses "I/N" (0 <= I < N, N >= 1). Error(Usage) naming --shard otherwise.
void parse_shard(const std::string& spec, uint32_t& index, uint32_t& count);

// Reads an existing JSONL output and returns the "file" of every complete line. A last line
// without its newline (a run killed mid-write) is cut off the file so that appending starts
// on a fresh line; lines that are not JSON objects with a "file" string are ignored. A
// missing file is an empty set. Error(BadInput) if the file exists but cannot be read or
// repaired.
std::set<std::string> read_done_files(const std::string& out_path);

}  // namespace glimpse::app
