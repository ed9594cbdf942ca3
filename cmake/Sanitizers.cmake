# Applies SHMHUB_SANITIZE to everything built after this point.
if(SHMHUB_SANITIZE)
  string(REPLACE ";" "," _shmhub_san "${SHMHUB_SANITIZE}")
  add_compile_options(-fsanitize=${_shmhub_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_shmhub_san})
  message(STATUS "shmhub: building with -fsanitize=${_shmhub_san}")
endif()
