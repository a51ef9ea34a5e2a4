# `apicv explore` (issue 13 item 6, docs/explore.md).
set(APICV_EXPLORE_OUT ${CMAKE_CURRENT_BINARY_DIR}/explore-out)

# Bad options: one `apicv: ...` line on stderr, exit 2, before any seed runs.
apicv_add_checked_test(NAME explore_rejects_bad_options TIMEOUT 120
  EXPECT "^PASS: every bad explore command line is one apicv: line and exit 2$"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/explore/bad_options.sh $<TARGET_FILE:apicv>
          ${APICV_EXPLORE_OUT})

# --shard K/N partitions A..B; --merge puts the shards back together and reports a missing or
# unfinished shard, a shard given twice and a file of another campaign.
apicv_add_checked_test(NAME explore_shards_and_merge TIMEOUT 300
  EXPECT "^PASS: shards partition the seeds and merge back$"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/explore/shards.sh $<TARGET_FILE:apicv>
          ${APICV_EXPLORE_OUT})

# The EOI-after-x2APIC-switch race (commits d50f271, ea325ec) in a guest built with both fixes and
# the deliberate replay reverted (guests/CMakeLists.txt: smp-eoi-race.elf): some seeds, not all,
# catch it, each reported command replays the same failure, and the fixed smp guest passes the
# same seeds. -icount shift=7: a caught seed's guest waits out several 2 s (virtual) checks, fewer
# instructions with longer ones. Not under TSan: explore's parent spawns processes and has no
# thread, and each child is a single-threaded deterministic run, so TSan has nothing to check here
# (240 s under ASan, several times that under TSan); explore_shards_and_merge runs there.
if(NOT APICV_SANITIZE_THREAD)
apicv_add_checked_test(NAME explore_finds_eoi_race RUN_SERIAL TIMEOUT 1500
  EXPECT "^PASS: explore caught the x2APIC-switch EOI race on [0-9]+ of 60 seeds"
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/explore/eoi_race.sh $<TARGET_FILE:apicv>
          ${CMAKE_BINARY_DIR}/guests/smp-eoi-race.elf ${APICV_EXPLORE_OUT} 60)
endif()
