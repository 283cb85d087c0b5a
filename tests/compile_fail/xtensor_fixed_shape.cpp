// expect: xtensor_input_shape_mismatch<1, 3, 31, 32, 3, 32, 32>
#include <ctnet/ctnet.hpp>
#include <ctnet/xtensor.hpp>
using namespace ctnet;
using net = network<shape{3, 32, 32}, seq<global_avg_pool, flatten, node<"fc", linear<3, 2>>>>;
int main() {
    weights<net> w;
    runner<net> r{w};
    xt::xtensor_fixed<float, xt::xshape<1, 3, 31, 32>> x{};
    auto y = run(r, x);
    return static_cast<int>(y(0, 0));
}
