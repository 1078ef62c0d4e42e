ci_unit_test(test_graph SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_graph.c LIBS ci_runner_t ci_config_t)
