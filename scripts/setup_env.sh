#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs the project into it.
# Idempotent: a second run only checks that the environment is complete.
#   FUSIONOCC_VENV   where the environment lives (default: <repo>/.venv)
#   FUSIONOCC_TORCH  the torch requirement (default: torch==2.13.0, the CPU build on these machines;
#                    on a CUDA machine use e.g. FUSIONOCC_TORCH="torch==2.13.0" with the CUDA index)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FUSIONOCC_VENV:-$repo/.venv}"
torch_req="${FUSIONOCC_TORCH:-torch==2.13.0}"
stamp="$venv/.fusionocc-setup-$(sha1sum "$repo/setup.py" "$repo/setup.cfg" "$repo/scripts/setup_env.sh" | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi
echo "[setup] creating the environment in $venv (first run only, about 2 minutes)" >&2
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# torch first and pinned: an unpinned torch (asked for by any dependency) pulls a multi-GB CUDA build.
"${pip[@]}" install "$torch_req"
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
"$venv/bin/python" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > "$constraints"
PIP_CONSTRAINT="$constraints" "${pip[@]}" install -e "$repo[ros,train,dev]"
"$venv/bin/python" - <<'PY'
import importlib
for mod in ("torch", "spconv.pytorch", "nuscenes", "rosbags", "rclpy", "sensor_msgs.msg", "pytest"):
    importlib.import_module(mod)
PY
rm -f "$venv"/.fusionocc-setup-*
touch "$stamp"
echo "[setup] environment ready: $venv" >&2
