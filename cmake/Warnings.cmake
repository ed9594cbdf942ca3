# Strict warnings for our own targets only; generated protobuf code and
# third-party headers see none of them. Warnings become errors only when
# SHMHUB_WERROR is on, as scripts/test.sh turns it on: a user building with
# another compiler or build type (GCC 12 at -O3 warns where -O2 does not)
# still gets a working build.
option(SHMHUB_WERROR "Treat warnings in shmhub's own code as errors" OFF)

function(shmhub_strict_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wnull-dereference -Wimplicit-fallthrough)
  if(SHMHUB_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
