# ci_build: the Dockerfile parser, COPY/ADD layers, and the store functions it writes with.
ci_unit_test(test_build SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_build.c
  LIBS ci_build_t ci_image_t PkgConfig::ARCHIVE)
