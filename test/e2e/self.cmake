# We use our tool: `cirrus run Build` of the project's own .cirrus.yml on the built-in backend
# (test/e2e/self.sh), in the image scripts/example-images.sh --dev builds.  About a minute.
add_test(NAME e2e_self
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/self.sh $<TARGET_FILE:cirrus> ${CMAKE_SOURCE_DIR})
set_tests_properties(e2e_self PROPERTIES LABELS "e2e;builtin" TIMEOUT 900 SKIP_RETURN_CODE 77)
