#!/usr/bin/env bash
# One command on a GPU machine, with one prebuilt binary and no Rust toolchain or network:
#
#   scripts/gpu-check.sh [path/to/dfd-gpu-check]      # DEVICE=cuda:1 to pick another GPU
#
# It finds the CUDA libraries the binary needs (the driver's libcuda.so.1; cudart, cuBLAS,
# cuBLASLt, cuRAND and NVRTC of CUDA 13) on LD_LIBRARY_PATH, in the system's library folders, in
# any Python's site-packages/nvidia/*/lib, or in .cuda/ (the wheels of scripts/build-cuda.sh),
# names those it cannot find (exit 2), then runs `dfd-gpu-check --device $DEVICE`: CUDA against
# the CPU at every cut and for one fine-tune step, extract and fine-tune throughput. It samples
# nvidia-smi for the peak GPU memory, and when a python3 with a CUDA-enabled torch is there, runs
# scripts/bench_torch.py on the same GPU, side by side. Exit status: that of dfd-gpu-check.
#
# The binary: the argument, else $DFD_GPU_CHECK, else target/cuda/release/dfd-gpu-check or
# bin/dfd-gpu-check (build it with: BINS=dfd-gpu-check STRIP=1 scripts/build-cuda.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda:0}

say() { echo "gpu-check: $*"; }

bin=${1:-${DFD_GPU_CHECK:-}}
if [[ -z $bin ]]; then
    for candidate in target/cuda/release/dfd-gpu-check bin/dfd-gpu-check; do
        [[ -x $candidate ]] && bin=$candidate && break
    done
fi
[[ -n $bin && -x $bin ]] || {
    say "no dfd-gpu-check binary (give its path; build it with BINS=dfd-gpu-check STRIP=1 scripts/build-cuda.sh)"
    exit 2
}

# Where the libraries may be.
dirs=()
IFS=: read -r -a from_env <<<"${LD_LIBRARY_PATH:-}"
dirs+=("${from_env[@]}")
for python in python3 python; do
    command -v "$python" >/dev/null || continue
    site=$("$python" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null) || continue
    while read -r dir; do
        for lib in "$dir"/nvidia/*/lib; do [[ -d $lib ]] && dirs+=("$lib"); done
    done <<<"$site"
done
for lib in .cuda/py/nvidia/*/lib /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
    [[ -d $lib ]] && dirs+=("$lib")
done

# Which of them hold each library (libcuda only from the driver, never a stub).
declare -A wheel=(
    [libcudart.so.13]=nvidia-cuda-runtime [libcublas.so.13]=nvidia-cublas
    [libcublasLt.so.13]=nvidia-cublas [libcurand.so.10]=nvidia-curand
    [libnvrtc.so.13]=nvidia-cuda-nvrtc [libcuda.so.1]="the NVIDIA driver"
)
path=()
missing=()
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    found=""
    for dir in "${dirs[@]}"; do
        [[ -n $dir && -e $dir/$lib ]] || continue
        [[ $dir == *.cuda/stub* ]] && continue
        found=$dir
        break
    done
    if [[ -z $found ]]; then
        found=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l { print $NF; exit }')
        found=${found%/*}
    fi
    if [[ -n $found ]]; then
        say "$lib: $found"
        path+=("$found")
    else
        missing+=("$lib (${wheel[$lib]})")
    fi
done
if ((${#missing[@]})); then
    say "missing: ${missing[*]}"
    say "libcuda.so.1 comes only with an NVIDIA driver; for the others: pip install --no-deps" \
        "--target DIR <the wheels named>, then add DIR/nvidia/*/lib to LD_LIBRARY_PATH"
    exit 2
fi
LD_LIBRARY_PATH=$(IFS=:; echo "${path[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    sed 's/^/gpu-check: GPU: /'

# Peak memory: nvidia-smi every 0.2 s while the check runs.
samples=$(mktemp)
(while nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >>"$samples" 2>/dev/null; do
    sleep 0.2
done) &
sampler=$!
"$bin" --device "$DEVICE"
status=$?
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
peak=$(sort -n "$samples" | tail -1)
rm -f "$samples"
say "peak GPU memory used during the check: ${peak:-unknown} MiB (nvidia-smi, every 0.2 s, all processes)"

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    say "PyTorch $(python3 -c 'import torch; print(torch.__version__)') on the same GPU (extract: includes the image upload and feature download):"
    for cut in pooled layer3; do
        for batch in 64 256; do
            python3 scripts/bench_torch.py --device "$DEVICE" extract --size 224 --cut "$cut" \
                --batch "$batch" --images $((batch * 5))
        done
    done
    python3 scripts/bench_torch.py --device "$DEVICE" train --head finetune --batch 256 --map 14 --steps 5
else
    say "no python3 with a CUDA-enabled torch here: no PyTorch figures"
fi
exit "$status"
