// A restriction on which tokens generation may pick (structured output: text/json_schema.h).
#pragma once

#include <cstdint>

namespace glimpse {

// Restricts which tokens generation may pick. continue_generation() calls mask() on the
// logits before each draw (set disallowed ids to -INFINITY), accept() after it, and stops
// (stop reason: the document is complete) once complete() is true.
//
// End-of-generation tokens are the constraint's to allow or forbid: mask() leaves them only
// where the text so far may end. An id accept() is given that mask() had forbidden is
// Error(Usage) (the caller sampled around the mask).
class TokenConstraint {
public:
    virtual ~TokenConstraint() = default;
    virtual void mask(float* logits, int n_vocab) = 0;
    virtual void accept(int32_t id) = 0;
    virtual bool complete() const = 0;
};

}  // namespace glimpse
