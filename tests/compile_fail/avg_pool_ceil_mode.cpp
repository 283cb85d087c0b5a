// expect: ctnet::avg_pool: ceil_mode is for max_pool only
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{3, 5, 5}, avg_pool<k<2>, stride<2>, ceil_mode>>;
static_assert(output_shape_v<bad>.c == 3);
