#!/usr/bin/env bash
# Builds the release binaries with `--features cuda` on a machine without a CUDA toolkit.
#
#   scripts/build-cuda.sh                         # every binary (or: make build-cuda)
#   BINS="dfd-gpu-check" STRIP=1 scripts/build-cuda.sh   # only the GPU check, stripped
#
# The CUDA compiler, headers and the libraries the link needs come from NVIDIA's pip wheels,
# installed once into $DFD_CUDA_DIR (default .cuda/, ignored by git): nvcc, the runtime, crt,
# cccl and nvvm (to compile candle's kernels), cuBLAS, cuRAND and NVRTC (to link). libcuda
# belongs to the GPU driver and exists only where a GPU is: the link uses a stub with its soname
# (libcuda.so.1) and the real driver resolves the symbols at run time.
#
# Environment:
#   CUDA_COMPUTE_CAP  GPU architecture the kernels are compiled for (default 90: H100/H200)
#   CUDA_WHEELS       the pip requirements (default: CUDA 13.0, listed below)
#   DFD_CUDA_DIR      where the wheels are installed (default .cuda)
#   BINS              binaries to build (default: all of them)
#   STRIP=1           strip the built binaries (to fit the device tool's 64 MiB carry)
#   CARGO_TARGET_DIR  default target/cuda, so the CPU build in target/ stays warm
#   PYTHON            the Python whose pip installs the wheels (default python3)
#
# Takes up to half an hour on 2 cores the first time (candle's CUDA kernels; every binary took 27
# minutes next to a test run; BINS=dfd-gpu-check alone 9 minutes, wheels included), a few minutes
# after that, plus ~1.5 GB of wheels.
# The binaries need, at run time, the driver's libcuda.so.1 and cuBLAS/cuRAND/NVRTC/cudart of
# CUDA 13 on LD_LIBRARY_PATH: scripts/gpu-check.sh finds them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
DFD_CUDA_DIR=$(realpath -m "${DFD_CUDA_DIR:-.cuda}")
CUDA_WHEELS=${CUDA_WHEELS:-"nvidia-cuda-nvcc==13.0.* nvidia-cuda-runtime==13.0.* \
nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.* nvidia-nvvm==13.0.* nvidia-cuda-nvrtc==13.0.* \
nvidia-cublas==13.0.* nvidia-curand==10.4.0.*"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
PYTHON=${PYTHON:-python3}

say() { echo "build-cuda: $*" >&2; }

# 1. The wheels, once per requirement list.
stamp="$DFD_CUDA_DIR/installed.txt"
if [[ ! -f $stamp || $(cat "$stamp") != "$CUDA_WHEELS" ]]; then
    say "installing $CUDA_WHEELS into $DFD_CUDA_DIR/py"
    rm -rf "$DFD_CUDA_DIR/py"
    # shellcheck disable=SC2086 # the list is split on purpose
    "$PYTHON" -m pip install --quiet --no-deps --target "$DFD_CUDA_DIR/py" $CUDA_WHEELS
    echo "$CUDA_WHEELS" >"$stamp"
fi
cuda=$(find "$DFD_CUDA_DIR/py/nvidia" -maxdepth 1 -name 'cu1*' -type d | sort | tail -1)
[[ -n $cuda && -x $cuda/bin/nvcc ]] || {
    say "no nvcc under $DFD_CUDA_DIR/py/nvidia/cu*/bin: check CUDA_WHEELS ($CUDA_WHEELS)"
    exit 1
}

# 2. The names the linker asks for (-lcublas …) next to the versioned files of the wheels.
for lib in cudart cublas cublasLt nvrtc curand; do
    file=$(find "$cuda/lib" -maxdepth 1 -name "lib$lib.so.*" ! -name '*builtins*' | sort | head -1)
    [[ -n $file ]] || { say "lib$lib.so.* is not in $cuda/lib: check CUDA_WHEELS"; exit 1; }
    ln -sf "$(basename "$file")" "$cuda/lib/lib$lib.so"
done

# 3. The driver's library: a stub with the soname the binaries will load.
mkdir -p "$DFD_CUDA_DIR/stub"
echo 'void dfd_libcuda_stub(void) {}' |
    "${CC:-cc}" -shared -fPIC -x c - -Wl,-soname,libcuda.so.1 -o "$DFD_CUDA_DIR/stub/libcuda.so"

# 4. The build.
export CUDA_ROOT=$cuda CUDA_PATH=$cuda PATH="$cuda/bin:$PATH"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$cuda/lib -L native=$DFD_CUDA_DIR/stub \
-C link-arg=-Wl,--allow-shlib-undefined -C link-arg=-Wl,--unresolved-symbols=ignore-in-object-files"
targets=(--bins)
if [[ -n ${BINS:-} ]]; then
    targets=()
    for bin in $BINS; do targets+=(--bin "$bin"); done
fi
say "cargo build --release --features cuda ${targets[*]} (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, $CARGO_TARGET_DIR)"
start=$SECONDS
cargo build --release --features cuda "${targets[@]}"
out="$CARGO_TARGET_DIR/release"
built=$(find "$out" -maxdepth 1 -type f -name 'dfd-*' -perm -u+x ! -name '*.d' | sort)
if [[ ${STRIP:-0} == 1 ]]; then
    for bin in $built; do strip "$bin"; done
fi
say "done in $((SECONDS - start)) s:"
for bin in $built; do say "  $bin ($(du -h "$bin" | cut -f1))"; done
