ci_unit_test(test_output SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_output.c
  ${CMAKE_SOURCE_DIR}/cmd/output.c ${CMAKE_SOURCE_DIR}/cmd/output_json.c
  ${CMAKE_SOURCE_DIR}/cmd/text.c ${CMAKE_SOURCE_DIR}/cmd/junit.c LIBS ci_runner_t ci_backends_t ci_config_t)
target_include_directories(test_output PRIVATE ${CMAKE_SOURCE_DIR}/cmd)
