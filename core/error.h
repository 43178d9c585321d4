// Errors inside the library are exceptions that carry what went wrong, where (file, key,
// tensor) and what kind of failure it is; the command line turns the kind into an exit code
// and prints the message as one line (see DESIGN.md, "Exit codes").
#pragma once

#include <stdexcept>
#include <string>

namespace glimpse {

enum class ErrorKind : int {
    Usage = 1,     // wrong flags or arguments
    BadInput = 2,  // a file missing, unreadable or corrupt (images, prompts, lists)
    Model = 3,     // bad or unsupported weights / model files
    Device = 4,    // no usable compute device
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const { return kind_; }
    int exit_code() const { return static_cast<int>(kind_); }

private:
    ErrorKind kind_;
};

// "path: message" — the form every file-related error takes.
inline Error model_error(const std::string& path, const std::string& message) {
    return Error(ErrorKind::Model, path + ": " + message);
}
inline Error input_error(const std::string& path, const std::string& message) {
    return Error(ErrorKind::BadInput, path + ": " + message);
}

}  // namespace glimpse
