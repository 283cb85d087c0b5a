// The ctnet tool's command-line helpers (apps/ctnet/): the default thread count per process under
// mpirun, and the value checks whose errors name what is wanted.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli_options.hpp"
#include "default_threads.hpp"

using ctnet_tool::default_threads;

TEST_CASE("default threads: the hardware threads shared by the ranks on this machine") {
    CHECK(default_threads(2, nullptr) == 2);  // a plain run: every hardware thread
    CHECK(default_threads(2, "1") == 2);
    CHECK(default_threads(2, "2") == 1);  // mpirun -np 2 on 2 cores: one thread each
    CHECK(default_threads(16, "2") == 8);
    CHECK(default_threads(16, "3") == 5);  // rounded down: never more threads than cores
    CHECK(default_threads(2, "4") == 1);   // oversubscribed: still one thread each
    CHECK(default_threads(0, nullptr) == 1);  // hardware_concurrency() unknown
    CHECK(default_threads(0, "2") == 1);
    // Not a positive integer: taken as one rank.
    CHECK(default_threads(8, "") == 8);
    CHECK(default_threads(8, "0") == 8);
    CHECK(default_threads(8, "-2") == 8);
    CHECK(default_threads(8, "2x") == 8);
}

namespace {

// The message a check gives for `value` ("" when it passes), and the value it passes on.
std::string check(const CLI::Validator& v, std::string& value) { return v(value); }

}  // namespace

TEST_CASE("value checks: integers") {
    const CLI::Validator batch = ctnet_tool::whole(1, 100);
    std::string s = "x";
    CHECK(check(batch, s) == "'x' is not an integer");
    s = "1.5";
    CHECK(check(batch, s) == "'1.5' is not an integer");
    s = "";
    CHECK(check(batch, s) == "'' is not an integer");
    s = "0";
    CHECK(check(batch, s) == "must be at least 1, not 0");
    s = "-1";
    CHECK(check(batch, s) == "must be at least 1, not -1");
    s = "101";
    CHECK(check(batch, s) == "must be at most 100, not 101");
    s = "99999999999999999999999";
    CHECK(check(batch, s) == "must be at most 100, not 99999999999999999999999");
    s = "010";  // decimal, not octal
    CHECK(check(batch, s).empty());
    CHECK(s == "10");
    const CLI::Validator two = ctnet_tool::whole(2, 100, " (batch norm)");
    s = "1";
    CHECK(check(two, s) == "must be at least 2 (batch norm), not 1");
}

TEST_CASE("value checks: numbers") {
    std::string s = "nan";
    CHECK(check(ctnet_tool::real(0.0, true), s) == "expects a number, got 'nan'");
    s = "1e400";
    CHECK(check(ctnet_tool::real(0.0, true), s) == "expects a number, got '1e400'");
    s = "0";
    CHECK(check(ctnet_tool::real(0.0, true), s) == "must be positive, not 0");
    CHECK(check(ctnet_tool::real(0.0, false), s).empty());
    s = "-0.5";
    CHECK(check(ctnet_tool::real(0.0, false), s) == "must not be negative, not -0.5");
    s = "1";
    CHECK(check(ctnet_tool::real(0.0, false, 1.0, true), s) == "must be in [0, 1), not 1");
    s = "0.999";
    CHECK(check(ctnet_tool::real(0.0, false, 1.0, true), s).empty());
}

TEST_CASE("a parsed command line: errors name the option, the last of a repeated option wins") {
    CLI::App app{"test", "test"};
    ctnet_tool::configure(app);
    int batch = 1;
    std::string backend = "cpu";
    app.add_option("--batch", batch, "images")->check(ctnet_tool::whole(1));
    ctnet_tool::one_of(app.add_option("--backend", backend, "kernels"), {"cpu", "reference"});
    const auto parse = [&](std::vector<std::string> args) -> std::string {
        std::reverse(args.begin(), args.end());  // CLI11 takes them last first
        try {
            app.parse(args);
        } catch (const CLI::ParseError& e) {
            return e.what();
        }
        return "";
    };
    CHECK(parse({"--batch", "x"}) == "--batch: 'x' is not an integer");
    CHECK(parse({"--backend", "gpu"}) == "--backend: gpu not in {cpu,reference}");
    CHECK(parse({"--batch", "4", "--batch", "8"}).empty());
    CHECK(batch == 8);
    CHECK(app.help().find("--batch INT") != std::string::npos);  // no type name given: CLI11's
    CHECK(app.help().find("images (default 1)") != std::string::npos);  // the default, as declared
    CHECK(app.help().find("--backend cpu|reference") != std::string::npos);
}
