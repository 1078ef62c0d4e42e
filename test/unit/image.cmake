# ci_image: unit tests (label unit) and end-to-end pulls (label e2e;registry).
ci_unit_test(test_image SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_image.c
  LIBS ci_image_t PkgConfig::ARCHIVE)
ci_unit_test(test_image_extract SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_image_extract.c
  LIBS ci_image_t PkgConfig::ARCHIVE)

# A command-line driver of the library (bench/image/pull.sh and the e2e tests use it).
add_executable(img_tool ${CMAKE_SOURCE_DIR}/bench/image/img_tool.c)
target_link_libraries(img_tool PRIVATE ci_image)
ci_unit_test(test_image_registry SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_image_registry.c
  LIBS ci_image_t PkgConfig::ARCHIVE)
