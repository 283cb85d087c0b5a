// expect: layer AuxLogits\.conv1\.conv \(conv\): kernel 5x5 is larger than the padded input 4x4 \(input \(128,4,4\)\)$
#include <ctnet/models/inception_v3.hpp>
using bad = ctnet::models::inception_v3<1000, 279>;  // the aux head (on by default) needs 299x299
static_assert(ctnet::param_count_v<bad> > 0);
