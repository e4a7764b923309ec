#!/usr/bin/env bash
# The whole check: bootstrap, lint, type-check, tests. Extra arguments go to pytest; the 30 slowest tests are
# listed at the end (to keep CI within its budget).
# Fails on any failure, including pytest collecting no test at all (exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh

echo "==> ruff check ."
.venv/bin/ruff check .

echo "==> mypy pyconsul.agent pyconsul.lab pyconsul.chaos"
# The import names are pyconsul.* (setup.py maps them onto agent/, lab/, chaos/); mypy finds them through a
# `pyconsul` symlink to this directory in .mypy-shim/ (git-ignored).
mkdir -p .mypy-shim && ln -sfn .. .mypy-shim/pyconsul
MYPYPATH=.mypy-shim .venv/bin/mypy -p pyconsul.agent -p pyconsul.lab -p pyconsul.chaos

echo "==> ansible-lint (site.yml, playbooks, roles, molecule)"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/ansible-lint --offline -q

echo "==> pytest"
rc=0
.venv/bin/python -m pytest -q --durations=30 tests "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
