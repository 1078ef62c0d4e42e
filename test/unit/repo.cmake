ci_unit_test(test_repo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_repo.c LIBS ci_runner_t)
