# ci_runtime: the pure parts (id ranges, users, options, run-dir removal, gc).  The namespaces
# themselves are tested end to end by test/e2e/runtime.sh.
ci_unit_test(test_runtime SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_runtime.c
  LIBS ci_runtime_t)
