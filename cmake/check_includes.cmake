# cmake -P check_includes.cmake: fails when a file, or a header of this
# repository it includes (followed transitively), includes a forbidden header.
#   -DROOT=<repository root> -DFILES=<a|b|...> -DFORBIDDEN=<regex|regex|...>
#   -DRULE=<what the rule protects, for the message> -DSTAMP=<file to touch on success>
# System and generated headers are matched but not followed: the rule is
# about what this repository's code asks for.
cmake_minimum_required(VERSION 3.25)

string(REPLACE "|" ";" pending "${FILES}")
set(seen "")
set(violations "")
set(bound 0)
while(pending)
  list(POP_FRONT pending file)
  if(file IN_LIST seen)
    continue()
  endif()
  list(APPEND seen "${file}")
  math(EXPR bound "${bound} + 1")
  if(bound GREATER 10000)
    message(FATAL_ERROR "check_includes: more than 10000 files reached from ${FILES}")
  endif()
  file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"].*$" "\\1" header "${line}")
    if(header MATCHES "${FORBIDDEN}")
      file(RELATIVE_PATH shown "${ROOT}" "${file}")
      list(APPEND violations "  ${shown} includes <${header}>")
    endif()
    if(EXISTS "${ROOT}/${header}" AND NOT IS_DIRECTORY "${ROOT}/${header}")
      list(APPEND pending "${ROOT}/${header}")
    endif()
  endforeach()
endwhile()

if(violations)
  list(JOIN violations "\n" listed)
  message(FATAL_ERROR "include rule broken (${RULE}):\n${listed}")
endif()
file(TOUCH "${STAMP}")
