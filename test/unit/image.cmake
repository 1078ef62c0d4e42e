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

# End to end: the real registry, OCI layout and docker-archive named by CIRRUS_TEST_REGISTRY,
# CIRRUS_TEST_OCI_LAYOUT and CIRRUS_TEST_DOCKER_ARCHIVE (scripts/engines.sh exports them).
# Missing ones fail; CIRRUS_TEST_SKIP=registry skips (exit 77).
add_executable(test_image_e2e ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_image_e2e.c)
target_compile_definitions(test_image_e2e PRIVATE CI_UNIT_TEST)
target_link_libraries(test_image_e2e PRIVATE ci_image_t PkgConfig::ARCHIVE PkgConfig::CMOCKA)
add_test(NAME image_e2e_registry COMMAND test_image_e2e)
set_tests_properties(image_e2e_registry PROPERTIES LABELS "e2e;registry" TIMEOUT 300
  SKIP_RETURN_CODE 77)
