// expect: layer Mixed_5x \(concat\): branch 2 \[branch3x3\] outputs \(8,4,4\) but branch 1 \[branch1x1\] outputs \(4,9,9\); spatial sizes must agree$
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{3, 9, 9}, node<"Mixed_5x", concat<node<"branch1x1", conv<4, k<1>>>,
                                                        node<"branch3x3", conv<8, k<3>, stride<2>>>>>>;
static_assert(param_count_v<bad> > 0);
