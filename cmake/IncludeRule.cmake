# shmhub_forbid_includes(TARGET RULE "why" PATTERNS regex...): the build of
# TARGET fails when one of its sources or headers, or a header of this
# repository they include, includes a header matching one of PATTERNS.
# A folder's link line says what it may use; this makes the rule hold for
# headers that are on the default include path anyway (grpc++, <sys/socket.h>).
function(shmhub_forbid_includes target)
  cmake_parse_arguments(ARG "" "RULE" "PATTERNS" ${ARGN})
  get_target_property(sources ${target} SOURCES)
  get_target_property(source_dir ${target} SOURCE_DIR)
  file(GLOB headers CONFIGURE_DEPENDS ${source_dir}/*.h)
  set(files ${headers})
  foreach(src IN LISTS sources)
    cmake_path(ABSOLUTE_PATH src BASE_DIRECTORY ${source_dir} OUTPUT_VARIABLE absolute)
    list(APPEND files ${absolute})
  endforeach()
  # Any header of ours may be reached, so any change re-checks.
  file(GLOB_RECURSE project_headers CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/shm/*.h ${PROJECT_SOURCE_DIR}/proto/*.h ${PROJECT_SOURCE_DIR}/server/*.h)
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${target}.include_rule.stamp)
  # Lists cross the command line joined by "|": one alternation of the
  # patterns, and the files split again by the script.
  list(JOIN ARG_PATTERNS "|" patterns)
  list(JOIN files "|" file_list)
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DROOT=${PROJECT_SOURCE_DIR} "-DFILES=${file_list}"
            "-DFORBIDDEN=${patterns}" "-DRULE=${ARG_RULE}" -DSTAMP=${stamp}
            -P ${PROJECT_SOURCE_DIR}/cmake/check_includes.cmake
    DEPENDS ${files} ${project_headers} ${PROJECT_SOURCE_DIR}/cmake/check_includes.cmake
    COMMENT "Checking the include rule of ${target}"
    VERBATIM)
  add_custom_target(${target}_include_rule DEPENDS ${stamp})
  add_dependencies(${target} ${target}_include_rule)
endfunction()
