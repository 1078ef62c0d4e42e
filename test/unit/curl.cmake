# backends/curl: a libcurl that cannot be loaded (the test points CIRRUS_TEST_LIBCURL at a
# missing file) is reported by the shim, the engine client, the docker backend and registry
# pulls.  Loading the real one is what every other HTTP test does.
ci_unit_test(test_curl_dl SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_curl_dl.c
  LIBS ci_backends_t)
