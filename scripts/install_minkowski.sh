#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 (CPU) into a virtual environment on Python >= 3.10.
#
# ME ships no wheels and its last release predates Python 3.10: it needs a source build against the
# installed torch (~25 min on 2 cores) and an import fix (`collections.Sequence` moved to
# `collections.abc` in Python 3.10). Usage:
#
#   scripts/install_minkowski.sh [VENV]        # default VENV: .venv-minkowski
#
# The venv gets torch==2.13.0, numpy<2 and this project (editable), so the parity tests run with
#   VENV/bin/python -m pytest tests/sparse/test_minkowski_parity.py
# Needs root for `apt-get install libopenblas-dev` (skipped when already installed).
set -euo pipefail
VENV=$(realpath -m "${1:-.venv-minkowski}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev
fi
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q "numpy<2" "setuptools<60" wheel
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: MinkowskiEngine==0.5.4 -d "$WORK"
tar -xzf "$WORK"/MinkowskiEngine-0.5.4.tar.gz -C "$WORK"
SRC="$WORK/MinkowskiEngine-0.5.4"
# Python 3.10 removed the ABC aliases from `collections`.
grep -rl --include='*.py' -E 'collections import Sequence|collections\.Sequence' "$SRC/MinkowskiEngine" |
  xargs sed -i -E 's/^from collections import Sequence, namedtuple$/from collections import namedtuple\nfrom collections.abc import Sequence/; s/^from collections import Sequence$/from collections.abc import Sequence/; s/collections\.Sequence/collections.abc.Sequence/g'
(cd "$SRC" && MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/python" setup.py install --cpu_only --blas=openblas >"$WORK/build.log" 2>&1) ||
  { tail -50 "$WORK/build.log"; echo "MinkowskiEngine build failed" >&2; exit 1; }
"$PY" -m pip install -q -e "$ROOT[dev]"
(cd / && "$VENV/bin/python" -c "import MinkowskiEngine as ME; print('MinkowskiEngine', ME.__version__, 'imports')")
