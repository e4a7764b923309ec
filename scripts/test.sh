#!/usr/bin/env bash
# The whole check: bootstrap, lint, type-check, tests. Extra arguments go to pytest.
# Fails on any failure, including pytest collecting no test at all (exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh

echo "==> ruff check ."
.venv/bin/ruff check .

echo "==> mypy agent lab chaos"
.venv/bin/mypy agent lab chaos

echo "==> ansible-lint (site.yml, playbooks, roles, molecule)"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/ansible-lint --offline -q

echo "==> pytest"
rc=0
.venv/bin/python -m pytest -q tests "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
