# backends/docker.c against a fake engine on a unix socket (a thread of the test).
find_package(Threads REQUIRED)
ci_unit_test(test_docker SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_docker.c
  LIBS ci_backends_t Threads::Threads)
