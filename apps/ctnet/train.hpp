// apps/ctnet/train.hpp — what the ctnet tool's two sources share: main.cpp adds `ctnet train`
// (train.cpp) to its command line.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace train_cli {

// Adds `ctnet train` and its options to `app` (argc and argv are kept for MPI_Init); returns what
// runs the command once the command line is parsed: it trains and returns the exit status, and
// throws ctnet::error for a failed run or CLI::ValidationError for options that do not go together.
std::function<int()> add_command(CLI::App& app, int argc, char** argv);

}  // namespace train_cli
