// expect: padding must be at most half the kernel
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{3, 8, 8}, max_pool<k<3>, stride<1>, pad<2>>>;
static_assert(output_shape_v<bad>.c == 3);
