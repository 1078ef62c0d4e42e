add_test(NAME e2e_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/cli.sh $<TARGET_FILE:cirrus>)
set_tests_properties(e2e_cli PROPERTIES LABELS "cli" TIMEOUT 120)
