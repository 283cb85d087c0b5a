// A steady-state forward pass of backend::cpu allocates nothing: the global allocation
// functions are replaced in this program to count every call.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <ctnet/cpu/fast_runner.hpp>
#include <ctnet/ctnet.hpp>

namespace {
std::atomic<long> allocations{0};
}  // namespace

// g++ pairs these replacements with the standard ones it inlined elsewhere and warns falsely.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
    ++allocations;
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc{};
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace ctnet;

TEST_CASE("backend::cpu: zero heap allocations per forward pass once warm, 1 and 2 threads") {
    using net = models::inception_v3<1000, 107, models::inception_options{.aux_logits = false}>;
    auto w = std::make_unique<weights<net>>();
    init_seeded(*w, 4);
    std::vector<float> x(2 * input_shape_v<net>.size(), 0.5F), y(2 * 1000);
    for (int threads : {1, 2}) {
        runner<net, backend::cpu> run{*w, {.threads = threads}};
        run.forward(x, y);  // first pass at this batch size: the arena is allocated
        const long before = allocations.load();
        for (int i = 0; i < 3; ++i) run.forward(x, y);
        CHECK(allocations.load() - before == 0);
    }
    // The counter counts: a vector allocates.
    const long before = allocations.load();
    std::vector<int> v(10);
    CHECK(allocations.load() - before == 1);
}
