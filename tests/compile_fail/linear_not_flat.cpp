// expect: layer fc \(linear\): expects a flat input \(64,\) but got \(4,4,4\); insert flatten first$
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{4, 4, 4}, node<"fc", linear<64, 10>>>;
static_assert(output_shape_v<bad> == shape{10});
