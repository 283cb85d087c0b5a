# Every public header compiles on its own, warning-free, with -Wall -Wextra -Wpedantic -Werror.
#   cmake -DCXX=... -DINCLUDE=... [-DMPI_INCLUDE=...] -DWORK=... -P check_headers.cmake
file(GLOB_RECURSE headers RELATIVE "${INCLUDE}" "${INCLUDE}/ctnet/*.hpp")
list(FILTER headers EXCLUDE REGEX "/cuda/")  # nvcc-only
# train/mpi.hpp includes <mpi.h>: checked with MPI's include directories (-DMPI_INCLUDE=a;b), else skipped.
set(extra "")
if(MPI_INCLUDE)
  foreach(dir IN LISTS MPI_INCLUDE)
    list(APPEND extra -isystem "${dir}")
  endforeach()
else()
  list(FILTER headers EXCLUDE REGEX "/mpi\\.hpp$")
endif()
set(failed 0)
file(MAKE_DIRECTORY "${WORK}")
foreach(h IN LISTS headers)
  string(MAKE_C_IDENTIFIER "${h}" id)
  file(WRITE "${WORK}/${id}.cpp" "#include <${h}>\n")
  execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror -I "${INCLUDE}" ${extra}
                          "${WORK}/${id}.cpp"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(SEND_ERROR "${h}:\n${out}${err}")
    math(EXPR failed "${failed} + 1")
  endif()
endforeach()
list(LENGTH headers n)
if(failed)
  message(FATAL_ERROR "${failed} of ${n} headers are not warning-free with ${CXX}")
endif()
message(STATUS "${n} headers compile warning-free with ${CXX}")
