# Compiles one compile-fail case and passes when the compiler rejects it with the message its
# first line announces ("// expect: REGEX"). clang 14 prints a network's diagnostic text as
# character codes, so a case may give clang a regex of its own ("// expect-clang: REGEX").
#   cmake -DCXX=... -DSOURCE=... -DINCLUDE=... -P check.cmake
file(STRINGS "${SOURCE}" head LIMIT_COUNT 2)
list(GET head 0 first)
string(REGEX REPLACE "^// expect: " "" expect "${first}")
execute_process(COMMAND "${CXX}" --version OUTPUT_VARIABLE version)
list(LENGTH head lines)
if(version MATCHES "clang" AND lines GREATER 1)
  list(GET head 1 second)
  if(second MATCHES "^// expect-clang: ")
    string(REGEX REPLACE "^// expect-clang: " "" expect "${second}")
  endif()
endif()
execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE}" "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "compiled, but it must not: ${SOURCE}")
endif()
if(NOT "${out}${err}" MATCHES "${expect}")
  message(FATAL_ERROR "rejected, but the message lacks '${expect}':\n${out}${err}")
endif()
message(STATUS "rejected as expected: ${expect}")
