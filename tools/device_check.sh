#!/usr/bin/env bash
# Run tools/device_check.py on the GPU machine: its own python3 and torch, plus the carried wheels.
#
#   bash tools/device_check.sh [device_check.py options...]
#
# 1. installs the wheels of $OCC_DEVICE_WHEELS (default .device_wheels, made here by
#    `make device-wheels` and carried along) into a private folder with pip --no-index
#    --no-deps --target (nothing is fetched; the machine's own packages stay untouched)
#    and puts that folder first on PYTHONPATH;
# 2. runs the check with the JSON and the log in $OUT (the device tool's output folder)
#    or, without it, work_dirs/device_check/, and the world and DDP run under /tmp;
# 3. a hard stop at $OCC_DEVICE_HARD_LIMIT seconds (default 560) keeps the whole command
#    inside a 10-minute call even if the check's own budget (--budget, default 480 s) slips;
#    the check then ends its running section and writes what it has.
# --device is $OCC_DEVICE (default cuda); options given on the command line win, e.g.
#   bash tools/device_check.sh --sections environment bev_pool      (a partial rerun)
#   PYTHON=.venv/bin/python bash tools/device_check.sh --device cpu --tiny   (here, on CPU)
# The JSON is rewritten after every section, so whatever finished is in it.
set -u -o pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${OCC_DEVICE_WHEELS:-.device_wheels}
SITE=${OCC_DEVICE_SITE:-/tmp/occ_device_site}
RESULTS=${OUT:-work_dirs/device_check}
WORK=${OCC_DEVICE_WORK:-/tmp/occ_device_check}
HARD_LIMIT=${OCC_DEVICE_HARD_LIMIT:-560}
# --device cuda: without a usable GPU the sections say so at once instead of running the
# full-size models on the CPU (a later --device on the command line wins)
DEVICE=${OCC_DEVICE:-cuda}
mkdir -p "$RESULTS" "$WORK"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
    echo "device_check.sh: installing ${#wheels[@]} carried wheels from $WHEELS into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}" || { echo "device_check.sh: pip install of the wheels failed" >&2; exit 3; }
    export OCC_DEVICE_SITE="$SITE"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "device_check.sh: no wheels in $WHEELS (run \`make device-wheels\` here and carry the folder)" >&2
fi

export PYTHONUNBUFFERED=1
nvidia-smi 2>/dev/null | head -15 || true
timeout -k 15 "$HARD_LIMIT" "$PY" tools/device_check.py --device "$DEVICE" --out "$RESULTS/device_check.json" \
    --log "$RESULTS/device_check.log" --work-dir "$WORK" --wheels "$WHEELS" "$@"
rc=$?
[ $rc -eq 124 ] && echo "device_check.sh: stopped at the hard limit of $HARD_LIMIT s" >&2
exit $rc
