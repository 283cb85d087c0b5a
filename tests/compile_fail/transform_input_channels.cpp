// expect: layer <input> \(transform_input\): expects 3 \(RGB\) channels but got \(1,28,28\)$
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{1, 28, 28}, seq<transform_input, node<"conv", conv<4, k<3>>>>>;
static_assert(param_count_v<bad> > 0);
