"""The ``harness`` CLI on top: runs, demo, bench, chaos, profiling and their reports."""
