# Compiles one compile-fail case and passes when the compiler rejects it with the message its
# first line announces ("// expect: REGEX").
#   cmake -DCXX=... -DSOURCE=... -DINCLUDE=... -P check.cmake
# A network that does not type-check carries its message as a template argument: g++ prints it
# as text, clang 14 as character codes, only the first 10 of them, then the length. For such a
# case the expectation is literal text (regex metacharacters escaped, as "\(") that starts the
# message, with a final "$" when it is the whole message. g++ must print it at the start of the
# message (and, with "$", the length); clang must print the codes of its first 10 characters
# (and, with "$", the length), derived here from the same line, so that both name the layer.
file(STRINGS "${SOURCE}" first LIMIT_COUNT 1)  # a ";" in the line comes back as "\;"
if(NOT first MATCHES "^// expect: ")
  message(FATAL_ERROR "${SOURCE}: the first line must be '// expect: REGEX'")
endif()
string(REGEX REPLACE "^// expect: " "" expect "${first}")
execute_process(COMMAND "${CXX}" --version OUTPUT_VARIABLE version)
execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE}" "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "compiled, but it must not: ${SOURCE}")
endif()
set(log "${out}${err}")

if(NOT log MATCHES "ctnet: the network does not type-check")
  # an ordinary static_assert: both compilers print its text
  set(pattern "${expect}")
else()
  # The expectation as literal text: "\X" is the character X; an unescaped metacharacter would
  # make the derived clang pattern mean something else than the g++ one, so it is refused.
  set(whole FALSE)
  set(body "${expect}")
  if(body MATCHES "[^\\]\\$$")
    set(whole TRUE)
    string(REGEX REPLACE "\\$$" "" body "${body}")
  endif()
  set(literal "")
  string(LENGTH "${body}" n)
  set(i 0)
  while(i LESS n)
    string(SUBSTRING "${body}" ${i} 1 c)
    if(c STREQUAL "\\")
      math(EXPR i "${i} + 1")
      string(SUBSTRING "${body}" ${i} 1 c)
    else()
      string(FIND "^$.*+?|()[]{}" "${c}" meta)
      if(meta GREATER -1)
        message(FATAL_ERROR "${SOURCE}: the expectation of a network diagnostic must be literal "
                            "text; escape '${c}' as '\\${c}': ${expect}")
      endif()
    endif()
    string(APPEND literal "${c}")
    math(EXPR i "${i} + 1")
  endwhile()
  string(LENGTH "${literal}" len)
  if(version MATCHES "clang")
    # clang 14: {{108, 97, 121, 101, 114, 32, 102, 99, 32, 40, ...}, 50} for "layer fc (..."
    set(codes "")
    set(i 0)
    while(i LESS len AND i LESS 10)
      string(SUBSTRING "${literal}" ${i} 1 c)
      string(HEX "${c}" hex)
      math(EXPR code "0x${hex}")
      if(code GREATER 127)
        math(EXPR code "${code} - 256")  # char is signed
      endif()
      list(APPEND codes ${code})
      math(EXPR i "${i} + 1")
    endwhile()
    list(JOIN codes ", " codes)
    set(length "[0-9]+")
    if(whole)
      set(length "${len}")
    endif()
    set(pattern "{{${codes}(}|, [^}]*}), ${length}}")
  else()
    # g++: diag_text{"layer fc (linear): expects (2048,) but got (1024,)", 50}
    set(pattern "{\"${body}")
    if(whole)
      set(pattern "${pattern}\", ${len}}")
    endif()
  endif()
endif()

if(NOT log MATCHES "${pattern}")
  message(FATAL_ERROR "rejected, but the message lacks '${pattern}' (from '${expect}'):\n${log}")
endif()
message(STATUS "rejected as expected: ${pattern}")
