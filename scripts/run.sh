#!/usr/bin/env bash
# The README's quick start: sets up the environment if needed (scripts/setup_env.sh, idempotent), then
#   bash scripts/run.sh demo [demo options]   runs the end-to-end demo (fusionocc demo)
#   bash scripts/run.sh test [pytest options] runs ruff and mypy, then the test suite
#   bash scripts/run.sh <any fusionocc subcommand> ...
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FUSIONOCC_VENV:-$repo/.venv}"
bash "$repo/scripts/setup_env.sh"
cd "$repo"
job="${1:-demo}"; shift || true
case "$job" in
  test)
    # lint and type-check first (ruff.toml, setup.cfg [mypy]): a finding fails the run before the tests start
    echo "[test] ruff check" >&2; "$venv/bin/ruff" check --quiet .
    echo "[test] mypy" >&2; "$venv/bin/mypy"
    exec "$venv/bin/python" -m pytest -q --timeout 900 "$@" ;;
  *) exec "$venv/bin/fusionocc" "$job" "$@" ;;
esac
