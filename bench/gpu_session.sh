#!/usr/bin/env bash
# One GPU sitting, in steps that each end well within a device command's 10 minutes: build
# fastrnn with its CUDA module (sm_90 only), run the CUDA tests on both paths and a subset
# under compute-sanitizer, then time fastrnn's CUDA path against PyTorch's cuDNN in slices
# that each append their rows to RESULTS_GPU.md as they are measured. docs/cuda.md lists the
# device-tool commands, what to carry and how long each step takes.
#
# Usage, from the repository root on the GPU machine (no network there: PyTorch, cuDNN, CuPy,
# cuBLAS (PyTorch's nvidia-cublas wheel), pybind11, CMake, ninja and nvcc come with its image;
# scipy-openblas32 is carried in .whl/):
#
#     bash bench/gpu_session.sh [--stub] STEP ...
#
# STEP: env | build | test | sanitizer | bench:H (H = 256, 512, 1024 or 2048: one slice of the
# cuDNN grid) | bench (every slice) | all (env build test sanitizer bench).
# `test`, `sanitizer` and `bench:*` build first when fastrnn._cuda does not import yet (a
# machine that went cold), so every device command can stand alone.
# BENCH_ARGS="--quick" adds arguments to compare_gpu.py.
#
# Results: ${OUT:-bench}/RESULTS_GPU.md (started from bench/RESULTS_GPU.md when that exists,
# so slices run in separate device commands accumulate once the lead copies the file back)
# and the log ${OUT:-/tmp}/gpu_session.log. Anything under $OUT comes back even when the
# command is cut off at its time limit.
#
# --stub (or FASTRNN_GPU_STUB=1): runs every step's own scripting on a machine without a GPU:
# argument handling, the wheel install, CMake's configuration (cuBLAS discovery included) but
# no compilation, the tests' selections collected but not run, the sanitizer commands printed,
# and compare_gpu.py --stub writing clearly marked fake rows through the same appending code.
# Nothing in a stub run measures or tests anything.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
STUB="${FASTRNN_GPU_STUB:-0}"
if [[ "${1:-}" == "--stub" ]]; then
  STUB=1
  shift
fi
RESULTS_DIR="${OUT:-bench}"
RESULTS="$RESULTS_DIR/RESULTS_GPU.md"
LOG="${OUT:-/tmp}/gpu_session.log"
BUILD_DIR="build/gpu"
SITE="/tmp/site"
HIDDEN_SLICES=(256 512 1024 2048)
mkdir -p "$RESULTS_DIR" "$(dirname "$LOG")"
touch "$LOG"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"

trap 'echo "gpu_session: FAILED at line $LINENO (exit $?); log: $LOG" >&2' ERR

log() {
  printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$LOG"
}

# Runs one command, its output to the terminal and the log; a failure stops the script.
run() {
  printf '$ %s\n' "$*" | tee -a "$LOG"
  "$@" 2>&1 | tee -a "$LOG"
}

# A command that needs the GPU (or a real build): run, or in stub mode only printed.
gpu_run() {
  if [[ "$STUB" == "1" ]]; then
    printf '[stub] $ %s\n' "$*" | tee -a "$LOG"
  else
    run "$@"
  fi
}

# The source tree's python/ goes first on PYTHONPATH where its compiled modules are (or are
# built here); a stub run in a checkout without them (CI) uses the installed fastrnn.
install_wheels() {
  local src="$PWD/python:"
  if [[ "$STUB" == "1" ]] && ! compgen -G "python/fastrnn/_cpu*.so" >/dev/null; then
    src=""
  fi
  if compgen -G ".whl/*.whl" >/dev/null; then
    log "carried wheels -> $SITE"
    run "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl
    export PYTHONPATH="$src$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="${src%:}${PYTHONPATH:+${src:+:}$PYTHONPATH}"
  fi
}

# Exits with a message naming the wheel to carry when a module the given steps need is absent.
# A stub run builds nothing unless it is asked for env or build, so only then does it need the
# build's modules (CI's virtual environment built fastrnn in pip's isolation, without pybind11).
check_modules() {
  local missing=() module modules=(numpy pytest) step needs_build=0
  [[ "$STUB" == "1" ]] || needs_build=1
  for step in "$@"; do
    [[ "$step" == "env" || "$step" == "build" ]] && needs_build=1
  done
  ((needs_build)) && modules+=(pybind11 scipy_openblas32)
  [[ "$STUB" == "1" ]] || modules+=(torch cupy)
  for module in "${modules[@]}"; do
    if ! "$PYTHON" -c "import $module" >/dev/null 2>&1; then
      missing+=("$module")
    fi
  done
  if ((${#missing[@]})); then
    echo "gpu_session: missing Python modules: ${missing[*]}" | tee -a "$LOG" >&2
    echo "gpu_session: carry their wheels in .whl/ (docs/cuda.md; scipy_openblas32 is the" \
      "scipy-openblas32 wheel)" | tee -a "$LOG" >&2
    exit 1
  fi
}

# The folder of the nvidia-cublas wheel (include/cublas_v2.h, lib/libcublas.so.*) in this
# Python's environment, or nothing.
cublas_root() {
  "$PYTHON" - <<'EOF'
import glob, os, sys
for base in sys.path:
    for inc in sorted(glob.glob(os.path.join(base, "nvidia", "*", "include", "cublas_v2.h"))) + \
            sorted(glob.glob(os.path.join(base, "nvidia", "cublas", "include", "cublas_v2.h"))):
        root = os.path.dirname(os.path.dirname(inc))
        if glob.glob(os.path.join(root, "lib", "libcublas.so*")):
            print(root)
            raise SystemExit(0)
EOF
}

step_env() {
  log "env"
  run uname -a
  gpu_run nvidia-smi
  if ! command -v nvcc >/dev/null; then
    echo "gpu_session: nvcc is not on PATH: the CUDA module cannot be built here" |
      tee -a "$LOG" >&2
    exit 1
  fi
  run nvcc --version
  run cmake --version
  run "$PYTHON" -c 'import sys, numpy, pybind11, scipy_openblas32
print(sys.version)
print("numpy", numpy.__version__, "pybind11", pybind11.__version__)
print("scipy_openblas32", scipy_openblas32.get_lib_dir())'
  gpu_run "$PYTHON" -c 'import torch, cupy
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN",
      torch.backends.cudnn.version(), "GPU", torch.cuda.get_device_name())
print("cupy", cupy.__version__)'
  echo "cuBLAS: $(cublas_root || true)" | tee -a "$LOG"
  if command -v compute-sanitizer >/dev/null; then
    echo "compute-sanitizer: $(command -v compute-sanitizer)" | tee -a "$LOG"
  else
    echo "compute-sanitizer: not on PATH (the sanitizer step will fail)" | tee -a "$LOG"
  fi
}

step_build() {
  log "build (CMake, FASTRNN_CUDA=ON, sm_90) into $BUILD_DIR"
  local python pybind11_dir root cublas_args=()
  python="$(command -v "$PYTHON")"
  pybind11_dir="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())')"
  root="$(cublas_root || true)"
  if [[ -n "$root" ]]; then
    cublas_args=(-DFASTRNN_CUBLAS=ON "-DFASTRNN_CUBLAS_ROOT=$root")
  else
    echo "gpu_session: no nvidia-cublas wheel found; building with the own GEMM" | tee -a "$LOG"
  fi
  run cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTRNN_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$pybind11_dir" \
    "${cublas_args[@]}"
  gpu_run cmake --build "$BUILD_DIR" --parallel
  if [[ "$STUB" == "1" ]]; then
    return
  fi
  local built=()
  mapfile -t built < <(find "$BUILD_DIR" -name '_cpu*.so' -o -name '_cuda*.so')
  if ((${#built[@]} < 2)); then
    echo "gpu_session: the build made ${built[*]:-nothing}, not _cpu and _cuda" | tee -a "$LOG" >&2
    exit 1
  fi
  run cp -f "${built[@]}" python/fastrnn/
  run "$PYTHON" -c 'from fastrnn import _backend; import fastrnn._cuda as m
print("fastrnn._cuda:", m.__file__, "| CUDA runtime", m.runtime_version(), "| cuBLAS", m.HAS_CUBLAS)
status = _backend.cuda_status()
print("cuda_status:", status)
for shape in [("lstm", 100, 1, 256, 256), ("lstm", 100, 16, 1024, 1024), ("gru", 50, 128, 512, 512)]:
    print(shape, "->", m.plan(*shape))
raise SystemExit(status != "ok")'
}

ensure_built() {
  if [[ "$STUB" == "1" ]]; then
    return
  fi
  if ! "$PYTHON" -c 'import fastrnn._cuda' >/dev/null 2>&1; then
    step_build
  fi
}

# pytest on the GPU, or in stub mode the same selection collected (proves it selects tests).
gpu_pytest() {
  if [[ "$STUB" == "1" ]]; then
    local rc=0
    run "$PYTHON" -m pytest --collect-only -q "$@" | tail -n 1 || rc=$?
    # 5: nothing collected, as where tests/test_cuda.py skips whole for want of a GPU
    if ((rc != 0 && rc != 5)); then
      return "$rc"
    fi
  else
    run "$PYTHON" -m pytest -q "$@"
  fi
}

# On the GPU a skipped CUDA test is a failure (a stub run only collects, where they skip).
expect_gpu() {
  if [[ "$STUB" != "1" ]]; then
    export FASTRNN_EXPECT_CUDA=1 FASTRNN_EXPECT_GPU=1
  fi
}

step_test() {
  ensure_built
  expect_gpu
  log "CUDA tests: both paths, both GEMMs, graphs, streams, bad input"
  gpu_pytest tests/test_cuda_build.py tests/test_cuda.py
  local path
  for path in standard persistent; do
    log "parity suite on the $path path (FASTRNN_CUDA_PATH=$path)"
    export FASTRNN_CUDA_PATH="$path"
    gpu_pytest tests/test_parity.py -k cuda
  done
  unset FASTRNN_CUDA_PATH
}

step_sanitizer() {
  ensure_built
  expect_gpu
  local tool
  for tool in memcheck racecheck; do
    log "compute-sanitizer --tool $tool on the sanitizer subset (both paths)"
    if [[ "$STUB" == "1" ]]; then
      gpu_pytest tests/test_cuda.py -k sanitizer_subset
    fi
    gpu_run compute-sanitizer --tool "$tool" --error-exitcode 1 "$PYTHON" -m pytest -q -p no:cacheprovider \
      tests/test_cuda.py -k sanitizer_subset
  done
}

# Starts $RESULTS from the committed bench/RESULTS_GPU.md (earlier slices) when it is elsewhere.
seed_results() {
  if [[ "$RESULTS" != "bench/RESULTS_GPU.md" && -f bench/RESULTS_GPU.md && ! -f "$RESULTS" ]]; then
    run cp bench/RESULTS_GPU.md "$RESULTS"
  fi
}

step_bench_slice() {
  local hidden="$1"
  ensure_built
  seed_results
  log "GPU benchmark slice H=$hidden -> $RESULTS"
  local extra=()
  read -r -a extra <<<"${BENCH_ARGS:-}"
  local stub_args=()
  [[ "$STUB" == "1" ]] && stub_args=(--stub)
  run "$PYTHON" bench/compare_gpu.py --hidden "$hidden" --append --output "$RESULTS" \
    "${stub_args[@]}" "${extra[@]}"
}

main() {
  local steps=("$@")
  if ((${#steps[@]} == 0)); then
    echo "usage: bash bench/gpu_session.sh [--stub] STEP ... (env build test sanitizer" \
      "bench:H bench all)" >&2
    exit 2
  fi
  local expanded=() step
  for step in "${steps[@]}"; do
    case "$step" in
    all) expanded+=(env build test sanitizer bench) ;;
    *) expanded+=("$step") ;;
    esac
  done
  for step in "${expanded[@]}"; do  # check every argument before running anything
    case "$step" in
    env | build | test | sanitizer | bench) ;;
    bench:256 | bench:512 | bench:1024 | bench:2048) ;;
    *)
      echo "gpu_session: unknown step '$step' (env build test sanitizer bench:H bench all;" \
        "H is one of ${HIDDEN_SLICES[*]})" >&2
      exit 2
      ;;
    esac
  done
  [[ "$STUB" == "1" ]] && log "STUB MODE: nothing below runs on a GPU"
  install_wheels
  check_modules "${expanded[@]}"
  local h
  for step in "${expanded[@]}"; do
    case "$step" in
    bench) for h in "${HIDDEN_SLICES[@]}"; do step_bench_slice "$h"; done ;;
    bench:*) step_bench_slice "${step#bench:}" ;;
    *) "step_$step" ;;
    esac
  done
  log "done (${expanded[*]}); results: $RESULTS; log: $LOG"
}

main "$@"
