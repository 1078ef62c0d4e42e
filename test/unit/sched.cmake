ci_unit_test(test_sched SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_sched.c
  ${CMAKE_CURRENT_SOURCE_DIR}/unit/fake_backend.c LIBS ci_runner_t ci_backends_t ci_config_t)
