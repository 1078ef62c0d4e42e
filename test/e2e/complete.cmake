# Shell completions, the man page and cmake --install (test/e2e/complete.sh).
add_test(NAME e2e_complete COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/complete.sh
  $<TARGET_FILE:cirrus> ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
set_tests_properties(e2e_complete PROPERTIES LABELS "cli" TIMEOUT 120)
