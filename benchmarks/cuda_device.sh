#!/usr/bin/env bash
# Issue 15's GPU run on a lent device machine, as one command (the device tool, from the repository root):
#   bash benchmarks/cuda_device.sh [--quick]
# The machine's image has CuPy, Numba, SymPy, SciPy and pytest but reaches no package index: sdekit is
# installed from this tree without its dependencies.  The results (benchmarks/results/cuda_device.*) and
# the log are copied to $OUT, which the device tool brings back.
set -uo pipefail
export PYTHONUNBUFFERED=1
export SDEKIT_CACHE_DIR=/tmp/sdekit-cache NUMBA_CACHE_DIR=/tmp/sdekit-cache/numba
out="${OUT:-/tmp/sdekit-cuda-device}"
mkdir -p "$out"
nvidia-smi -L 2>&1 | tee "$out/device.txt"
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>&1 | tail -3 || exit 1
python3 -c "import cupy, numba, sympy; print('cupy', cupy.__version__, 'numba', numba.__version__, 'sympy', sympy.__version__)" \
    | tee -a "$out/device.txt"
python3 -m benchmarks.cuda_device "$@" 2>&1 | tee "$out/cuda_device.log"
status=${PIPESTATUS[0]}
cp benchmarks/results/cuda_device.json benchmarks/results/cuda_device.md benchmarks/results/cuda_device.png "$out"/ 2>/dev/null
exit "$status"
