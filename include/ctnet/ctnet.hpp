// ctnet/ctnet.hpp — umbrella header: networks as types, the Inception models, the reference
// runner and the summary. Heavier optional parts (I/O, training, CUDA) have headers of their own.
// Requires: C++20 (g++ 12, clang 14). Guarantees: no dependency beyond the standard library.

#pragma once

#include "core/error.hpp"
#include "core/fixed_string.hpp"
#include "core/shape.hpp"
#include "cpu/reference.hpp"
#include "cpu/runner.hpp"
#include "graph/compose.hpp"
#include "graph/network.hpp"
#include "graph/params.hpp"
#include "graph/summary.hpp"
#include "layers/activation.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv.hpp"
#include "layers/linear.hpp"
#include "layers/options.hpp"
#include "layers/pool.hpp"
#include "models/inception_v2.hpp"
#include "models/inception_v3.hpp"
