// expect: ctnet::linear: the only option is bias<>
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{8}, node<"fc", linear<8, 2, k<3>>>>;
static_assert(output_shape_v<bad> == shape{2});
