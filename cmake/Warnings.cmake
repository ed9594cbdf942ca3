# Strict warnings for our own targets only. Generated protobuf code and
# third-party headers must not see -Werror (toolchain.md, pitfall 3).
function(shmhub_strict_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Werror -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wnull-dereference -Wimplicit-fallthrough)
endfunction()
