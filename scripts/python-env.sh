#!/usr/bin/env bash
# Make sure a Python virtual environment with models/requirements.txt exists
# and print its python path. Reused across runs while the requirements are
# unchanged (keyed by their hash), in $KTK_TOOLS_DIR (~/.cache/kiosk-to-kafka).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${KTK_TOOLS_DIR:-$HOME/.cache/kiosk-to-kafka}
hash=$(sha256sum "$repo/models/requirements.txt" | cut -c1-12)
venv="$tools/venv-$hash"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "[python-env] creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo/models/requirements.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
