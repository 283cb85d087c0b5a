// apps/ctnet/train.hpp — what the ctnet tool's two sources share: main.cpp dispatches
// `ctnet train` to train.cpp.
#pragma once

namespace train_cli {

// `ctnet train [options]` (argv[1] is "train"): parses the options (--help prints them), trains,
// and returns the exit status; throws ctnet::error for a bad option or a failed run.
int train(int argc, char** argv);

}  // namespace train_cli
