# backends/engine_http: decoders and the client's error paths (fake unix-socket server) run as
# a unit test; the same binary with an argument runs end to end against a real engine, found
# through DOCKER_HOST / CONTAINER_HOST (scripts/engines.sh starts both).  A missing engine
# fails; CIRRUS_TEST_SKIP=docker (or podman) skips on purpose (exit 77).
find_package(Threads REQUIRED)
ci_unit_test(test_engine_http SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_engine_http.c
  LIBS ci_backends_t Threads::Threads)
foreach(engine docker podman)
  add_test(NAME e2e_engine_http_${engine} COMMAND test_engine_http ${engine})
  set_tests_properties(e2e_engine_http_${engine} PROPERTIES
    LABELS "e2e;${engine}" TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()
