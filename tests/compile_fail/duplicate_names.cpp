// expect: layer block\.conv \(conv\): this path already names the parameters of a conv; wrap one of them in node<
#include <ctnet/ctnet.hpp>
using namespace ctnet;
using bad = network<shape{3, 8, 8}, node<"block", seq<node<"conv", conv<4, k<3>>>, relu, node<"conv", conv<4, k<3>>>>>>;
static_assert(param_count_v<bad> > 0);
