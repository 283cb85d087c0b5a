# Compiles one compile-fail case and passes when the compiler rejects it with the message its
# first line announces ("// expect: REGEX").
#   cmake -DCXX=... -DSOURCE=... -DINCLUDE=... -P check.cmake
file(STRINGS "${SOURCE}" first LIMIT_COUNT 1)
string(REGEX REPLACE "^// expect: " "" expect "${first}")
execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE}" "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "compiled, but it must not: ${SOURCE}")
endif()
if(NOT "${out}${err}" MATCHES "${expect}")
  message(FATAL_ERROR "rejected, but the message lacks '${expect}':\n${out}${err}")
endif()
message(STATUS "rejected as expected: ${expect}")
