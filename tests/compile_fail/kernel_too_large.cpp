// expect: layer head\.conv \(conv\): kernel 5x5 is larger than the padded input 3x3 \(input \(16,3,3\)\)$
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{16, 3, 3}, node<"head", node<"conv", conv<8, k<5>>>>>;
static_assert(output_shape_v<bad>.c == 8);
