#!/usr/bin/env bash
# Issue 15's GPU run on a lent device machine, as one command (the device tool, from the repository root):
#   bash benchmarks/cuda_device.sh [--quick]
# The machine's image has CuPy, Numba, SymPy, SciPy and pytest but reaches no package index: sdekit is
# installed from this tree without its dependencies (or, where an editable install cannot be built, its
# package layout is made with two links).  Results go to $OUT, which the device tool brings back:
# cuda_device.partial.json after each stage (a run cut short keeps what it measured), then
# cuda_device.{json,md,png} and the log; a full run also writes benchmarks/results/.
set -uo pipefail
export PYTHONUNBUFFERED=1
export SDEKIT_CACHE_DIR=/tmp/sdekit-cache NUMBA_CACHE_DIR=/tmp/sdekit-cache/numba
out="${OUT:-/tmp/sdekit-cuda-device}"
mkdir -p "$out"
nvidia-smi -L 2>&1 | tee "$out/device.txt"
if ! python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>&1 | tail -3; then
    echo "no editable install: sdekit.codegen / sdekit.kernels linked into sdekit/" | tee -a "$out/device.txt"
    ln -sfn ../codegen sdekit/codegen && ln -sfn ../kernels sdekit/kernels || exit 1
fi
python3 -c "import sdekit.kernels.cuda_backend, cupy, numba, sympy; print('sdekit', sdekit.__file__, 'cupy', \
cupy.__version__, 'numba', numba.__version__, 'sympy', sympy.__version__)" 2>&1 | tee -a "$out/device.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "sdekit, CuPy, Numba or SymPy does not import: nothing measured" | tee -a "$out/device.txt"; exit 3; }
python3 -m benchmarks.cuda_device "$@" --out "$out" 2>&1 | tee "$out/cuda_device.log"
exit "${PIPESTATUS[0]}"
