// expect: layer fc \(linear\): expects \(2048,\) but got \(1024,\)$
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{1024, 2, 2}, seq<global_avg_pool, flatten, node<"fc", linear<2048, 10>>>>;
static_assert(output_shape_v<bad> == shape{10});
