#!/usr/bin/env bash
# One command for a session that has a lent GPU machine: build fastrnn with its CUDA module, run
# the CUDA tests, then time fastrnn's CUDA path against PyTorch's cuDNN (bench/compare.py --gpu).
#
# Usage, from the repository root on the GPU machine (no network there; PyTorch, cuDNN, CuPy,
# pybind11, CMake, ninja and nvcc are expected to be preinstalled):
#
#     bash bench/gpu_session.sh [STEP ...]      STEP: env build test bench (default: all four)
#     BENCH_ARGS=--quick bash bench/gpu_session.sh bench    # extra arguments for compare.py
#
# Writes ${OUT:-bench}/RESULTS_GPU.md and logs every step to ${OUT:-/tmp}/gpu_session.log.
# `test` and `bench` build first when fastrnn._cuda does not import yet.
#
# Wheels to carry: the machine's image has no scipy-openblas32 (the CPU module links it, and
# fastrnn imports it); pybind11 is there, carry it too only if the `env` step says it is missing.
# Once, here, in the repository root (.whl/ is git-ignored):
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         -d .whl scipy-openblas32==0.3.34.481.3 [pybind11]     # ~8 MB
#
# then call the device tool with carry [".whl"] and command "bash bench/gpu_session.sh"; this
# script installs .whl/*.whl into /tmp/site (pip --no-index) and puts it on PYTHONPATH. A device
# command may run 10 minutes at most: if build + tests + the full benchmark (~8 min) do not fit,
# run "bash bench/gpu_session.sh env build test" first, then "bash bench/gpu_session.sh bench" on
# the still-warm machine (build/gpu and python/fastrnn/_*.so are kept while it is warm).
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
RESULTS_DIR="${OUT:-bench}"
LOG="${OUT:-/tmp}/gpu_session.log"
BUILD_DIR="build/gpu"
SITE="/tmp/site"
mkdir -p "$RESULTS_DIR" "$(dirname "$LOG")"
: >"$LOG"
export PYTHONUNBUFFERED=1

trap 'echo "gpu_session: FAILED at line $LINENO (exit $?); log: $LOG" >&2' ERR

log() {
  printf '\n=== %s\n' "$*" | tee -a "$LOG"
}

# Runs one command, its output to the terminal and the log; a failure stops the script.
run() {
  printf '$ %s\n' "$*" | tee -a "$LOG"
  "$@" 2>&1 | tee -a "$LOG"
}

install_wheels() {
  if compgen -G ".whl/*.whl" >/dev/null; then
    log "carried wheels -> $SITE"
    run python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl
    export PYTHONPATH="$PWD/python:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
  fi
}

# Exits with a message naming the wheel to carry when a module the build or the run needs is absent.
check_modules() {
  local missing=()
  local module
  for module in pybind11 scipy_openblas32 numpy torch cupy pytest; do
    if ! python3 -c "import $module" >/dev/null 2>&1; then
      missing+=("$module")
    fi
  done
  if ((${#missing[@]})); then
    echo "gpu_session: missing Python modules: ${missing[*]}" | tee -a "$LOG" >&2
    echo "gpu_session: carry their wheels in .whl/ (see the top of $0; scipy_openblas32 is the" \
      "scipy-openblas32 wheel)" | tee -a "$LOG" >&2
    exit 1
  fi
}

step_env() {
  log "env"
  run uname -a
  run nvidia-smi
  if ! command -v nvcc >/dev/null; then
    echo "gpu_session: nvcc is not on PATH: the CUDA module cannot be built here" |
      tee -a "$LOG" >&2
    exit 1
  fi
  run nvcc --version
  run cmake --version
  run python3 -c 'import sys, sysconfig, torch, cupy, numpy, pybind11, scipy_openblas32
print(sys.version)
print("Python headers:", sysconfig.get_paths()["include"])
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(),
      "GPU", torch.cuda.is_available() and torch.cuda.get_device_name())
print("cupy", cupy.__version__, "numpy", numpy.__version__, "pybind11", pybind11.__version__)
print("scipy_openblas32", scipy_openblas32.get_lib_dir())'
}

step_build() {
  log "build (CMake, FASTRNN_CUDA=ON) into $BUILD_DIR"
  local python pybind11_dir
  python="$(command -v python3)"
  pybind11_dir="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')"
  run cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTRNN_CUDA=ON \
    -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$pybind11_dir"
  run cmake --build "$BUILD_DIR" --parallel
  local built=()
  mapfile -t built < <(find "$BUILD_DIR" -name '_cpu*.so' -o -name '_cuda*.so')
  if ((${#built[@]} < 2)); then
    echo "gpu_session: the build made ${built[*]:-nothing}, not _cpu and _cuda" | tee -a "$LOG" >&2
    exit 1
  fi
  run cp -f "${built[@]}" python/fastrnn/
  run python3 -c 'from fastrnn import _backend; import fastrnn._cuda as m
print("fastrnn._cuda:", m.__file__, "| CUDA runtime", m.runtime_version())
status = _backend.cuda_status()
print("cuda_status:", status)
raise SystemExit(status != "ok")'
}

ensure_built() {
  if ! python3 -c 'import fastrnn._cuda' >/dev/null 2>&1; then
    step_build
  fi
}

step_test() {
  ensure_built
  log "CUDA tests"
  run env FASTRNN_EXPECT_CUDA=1 FASTRNN_EXPECT_GPU=1 python3 -m pytest -q \
    tests/test_cuda_build.py tests/test_cuda.py tests/test_parity.py -k "cuda or test_cuda"
}

step_bench() {
  ensure_built
  log "GPU benchmark -> $RESULTS_DIR/RESULTS_GPU.md"
  local extra=()
  read -r -a extra <<<"${BENCH_ARGS:-}"
  run python3 bench/compare_gpu.py --output "$RESULTS_DIR/RESULTS_GPU.md" "${extra[@]}"
}

main() {
  local steps=("$@")
  if ((${#steps[@]} == 0)); then
    steps=(env build test bench)
  fi
  install_wheels
  check_modules
  local step
  for step in "${steps[@]}"; do
    case "$step" in
    env | build | test | bench) "step_$step" ;;
    *)
      echo "gpu_session: unknown step '$step' (env, build, test, bench)" >&2
      exit 2
      ;;
    esac
  done
  log "done (${steps[*]}); log: $LOG"
}

main "$@"
