// expect: layer <input> \(input\): inception_v3 needs an input of 3 channels and at least 75x75 but got \(3,74,74\)$
#include <ctnet/models/inception_v3.hpp>
using bad = ctnet::models::inception_v3<1000, 74, ctnet::models::inception_options{.aux_logits = false}>;
static_assert(ctnet::param_count_v<bad> > 0);
