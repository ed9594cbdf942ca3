# cmake -P include_rule_test.cmake -DCHECKER=<cmake/check_includes.cmake> -DWORK=<scratch dir>
# The include rule (cmake/IncludeRule.cmake) on small trees written here:
# a forbidden header is refused whether a file names it or reaches it
# through a header of ours, the message names the file that asked, clean
# files pass, and an include cycle ends.
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/a")
file(WRITE "${WORK}/a/clean.h" "#include <string>\n#include \"a/cycle_x.h\"\n")
file(WRITE "${WORK}/a/cycle_x.h" "#include \"a/cycle_y.h\"\n")
file(WRITE "${WORK}/a/cycle_y.h" "#include \"a/cycle_x.h\"\n")
file(WRITE "${WORK}/a/ok.cc" "#include \"a/clean.h\"\n#include <vector>\n")
file(WRITE "${WORK}/a/middle.h" "#include <vector>\n  #  include <sys/socket.h>\n")
file(WRITE "${WORK}/a/indirect.cc" "#include \"a/middle.h\"\n")
file(WRITE "${WORK}/a/direct.cc" "#include \"grpcpp/server.h\"\n")

set(forbidden "^grpc|^sys/socket\\.h$")

# check(NAME FILE EXPECT_OK): runs the checker on FILE; fails the test unless
# it succeeds exactly when EXPECT_OK, leaving its output in NAME_output.
function(check name file expect_ok)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -DROOT=${WORK} -DFILES=${WORK}/${file} "-DFORBIDDEN=${forbidden}"
            "-DRULE=the test's rule" -DSTAMP=${WORK}/${name}.stamp -P ${CHECKER}
    RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(expect_ok AND NOT result EQUAL 0)
    message(FATAL_ERROR "${name}: a clean file was refused:\n${out}${err}")
  endif()
  if(NOT expect_ok AND result EQUAL 0)
    message(FATAL_ERROR "${name}: a forbidden include was let through")
  endif()
  if(expect_ok AND NOT EXISTS "${WORK}/${name}.stamp")
    message(FATAL_ERROR "${name}: passed without touching its stamp")
  endif()
  set(${name}_output "${out}${err}" PARENT_SCOPE)
endfunction()

check(clean a/ok.cc TRUE)
check(indirect a/indirect.cc FALSE)
if(NOT indirect_output MATCHES "a/middle.h includes <sys/socket.h>")
  message(FATAL_ERROR "the message does not name the header that asked:\n${indirect_output}")
endif()
if(NOT indirect_output MATCHES "the test's rule")
  message(FATAL_ERROR "the message does not say which rule:\n${indirect_output}")
endif()
check(direct a/direct.cc FALSE)
if(NOT direct_output MATCHES "a/direct.cc includes <grpcpp/server.h>")
  message(FATAL_ERROR "the message does not name the file:\n${direct_output}")
endif()
