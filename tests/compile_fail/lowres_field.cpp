// expect: the paper's section 9 variants have a 151x151 or a 79x79 receptive field
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = models::inception_v3_lowres<100>;
static_assert(output_shape_v<bad>.c == 1000);
