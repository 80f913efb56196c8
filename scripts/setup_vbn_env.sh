#!/usr/bin/env bash
# Build .venv-vbn: the separate environment of the VBN source (allensdk 2.16.2 pins old
# numpy/pandas/xarray that cannot share the main environment). Used only by the vbn_extract rule
# (config vbn.python) and `python -m spikerbm.vbn list-sessions`. About 1 minute, ~1.1 GB.
#   bash scripts/setup_vbn_env.sh            # build (no-op when already up to date)
#   VBN_VENV=/path PYTHON=python3.11 bash scripts/setup_vbn_env.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VBN_VENV:-.venv-vbn}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
  || { echo "setup_vbn_env: $PY is older than Python 3.11; set PYTHON=python3.11" >&2; exit 1; }
STAMP="$VENV/.requirements-vbn.txt"
if [ -x "$VENV/bin/python" ] && cmp -s requirements-vbn.txt "$STAMP" \
  && "$VENV/bin/python" -c 'import allensdk, spikerbm.vbn' 2>/dev/null; then
  echo "setup_vbn_env: $VENV is up to date"
  exit 0
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-vbn.txt
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
"$VENV/bin/python" -c 'import allensdk, pynwb, xarray, netCDF4, spikerbm.vbn, spikerbm.io; print("setup_vbn_env: allensdk", allensdk.__version__, "xarray", xarray.__version__, "ok")'
cp requirements-vbn.txt "$STAMP"
