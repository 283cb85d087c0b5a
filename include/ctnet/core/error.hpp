// ctnet/core/error.hpp — the one exception type of the library.
//
// Every run-time failure on user input (a wrong buffer size, a bad file, an unknown tensor
// name) throws ctnet::error with a message naming what is wrong and both values. The library
// never asserts on user input.
// Requires: nothing. Guarantees: what() is one line naming what is wrong and where.

#pragma once

#include <stdexcept>
#include <string>

namespace ctnet {

class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace ctnet
