// A whole file mapped read-only into memory. Weights are read through this and never copied:
// tensor views point into the mapping, and a shared_ptr to the MappedFile keeps it alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace glimpse {

class MappedFile {
public:
    // Throws Error(BadInput) naming the path if the file is missing or unreadable, or if it
    // is a directory. An empty file maps to size() == 0, data() == nullptr.
    static std::shared_ptr<const MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    std::string path_;
};

}  // namespace glimpse
