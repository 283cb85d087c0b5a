// apps/ctnet/default_threads.hpp — how many threads `ctnet train` takes when --threads is not given.
//
// Under mpirun the ranks on one machine share its cores: each takes
// max(1, hardware threads / ranks on this node). Open MPI's launcher puts the ranks on this node
// in OMPI_COMM_WORLD_LOCAL_SIZE (the only launcher under which the tool initialises MPI); a plain
// run has no such variable and takes every hardware thread.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstring>

namespace ctnet_tool {

// hardware: std::thread::hardware_concurrency() (0: unknown, taken as 1); local_size: the
// launcher's rank count on this node as text (OMPI_COMM_WORLD_LOCAL_SIZE), nullptr when not
// launched by it; anything but a positive integer counts as one rank.
[[nodiscard]] inline int default_threads(unsigned hardware, const char* local_size) {
    long ranks = 1;
    if (local_size != nullptr) {
        const char* end = local_size + std::strlen(local_size);
        long v = 0;
        const auto [ptr, ec] = std::from_chars(local_size, end, v);
        if (ec == std::errc{} && ptr == end && v > 0) ranks = v;
    }
    const long threads = static_cast<long>(std::max(1U, hardware)) / ranks;
    return static_cast<int>(std::clamp(threads, 1L, 1L << 20));
}

}  // namespace ctnet_tool
