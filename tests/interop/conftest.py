"""tests/interop/upstream/ holds other projects' test suites, vendored: tests/interop/upstream_suites.py runs them
in their own pytest processes (test_upstream_suites.py); a plain `pytest tests` must not collect them."""

collect_ignore = ["upstream"]
