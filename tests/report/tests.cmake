# The report page in a real browser (issue 14 item 5): headless Chromium renders
# `apicv repro seed-000 --report`, every figure must lay out, no network request, and the
# screenshot build/<preset>/tests/report/chromium/report-seed000.png is kept as the artifact.
# The browser test has no sanitizer twin (the page is the same; the SVG/HTML code runs under the
# sanitizers in report_svg_chart_test): in ASan/TSan builds it is registered as a skip so
# tests/allowed-skips.txt lists one name for every preset.
if(NOT APICV_SANITIZE_ADDRESS AND NOT APICV_SANITIZE_THREAD)
  apicv_add_checked_test(NAME report_chromium
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/report_chromium.sh $<TARGET_FILE:apicv>
            ${CMAKE_CURRENT_BINARY_DIR}/tests/report/chromium
    EXPECT "^figures rendered: ([0-9]+) of \\1$" "^network requests: 0$"
           "^screenshot: .*report-seed000.png$" "^PASS$"
    TIMEOUT 600 RUN_SERIAL)
else()
  add_test(NAME report_chromium
           COMMAND bash -c "echo 'SKIP: the browser test runs in the uninstrumented build only'; exit 77")
  set_tests_properties(report_chromium PROPERTIES SKIP_RETURN_CODE 77)
endif()
