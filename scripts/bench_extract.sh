#!/usr/bin/env bash
# Extract-stage benchmark: dfd-extract (release) against scripts/bench_torch.py on the same
# machine, 224 px resnext50_32x4d with random weights, batch 32, to `pooled` and to `layer3`.
# The Rust figure is the whole stage's loop (reading image shards, normalising, the forward,
# f32/f16 conversion, writing feature shards); model loading is excluded on both sides.
#
#   scripts/bench_extract.sh            # IMAGES=128 THREADS=2 by default
#   IMAGES=256 THREADS=2 scripts/bench_extract.sh
#
# Prints one line per cut: Rust img/s, PyTorch img/s and their ratio (>1 = Rust faster), then
# the Rust rate as GFLOP/s and its share of the machine's f32 GEMM peak (the gemm crate's and
# OpenBLAS's through numpy, measured then on the same threads; examples/roofline.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${IMAGES:-128}
THREADS=${THREADS:-2}
BATCH=32
SIZE=224
CARGO=${CARGO:-cargo}
BIN=${CARGO_TARGET_DIR:-target}/release

$CARGO build --release -q -p dfd-extract --bin dfd-extract --example make_bench_shards --example roofline
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BIN/examples/make_bench_shards" --data-dir "$work/data" --size "$SIZE" --images "$IMAGES"

for cut in pooled layer3; do
    cat > "$work/bench-$cut.toml" <<TOML
[dataset]
name = "bench"
[preprocess]
size = $SIZE
copies = 0
[extract]
arch = "resnext50_32x4d"
weights = "random:0"
cut = "$cut"
batch_size = $BATCH
TOML
    log=$(RAYON_NUM_THREADS=$THREADS NO_COLOR=1 RUST_LOG=info "$BIN/dfd-extract" \
        --config "$work/bench-$cut.toml" --data-dir "$work/data" 2>&1)
    rust=$(grep -o 'img_per_s=[0-9.]*' <<<"$log" | tail -1 | cut -d= -f2)
    rss=$(grep -o 'peak_rss_mib=[0-9.]*' <<<"$log" | tail -1 | cut -d= -f2)
    torch=$(python3 scripts/bench_torch.py --threads "$THREADS" extract --size "$SIZE" --cut "$cut" \
        --batch "$BATCH" --images "$IMAGES" | python3 -c 'import json, sys; print(json.load(sys.stdin)["img_per_s"])')
    ratio=$(python3 -c "print(f'{$rust / $torch:.2f}')")
    echo "extract ${SIZE}px -> $cut, batch $BATCH, $IMAGES images, $THREADS threads: dfd-extract $rust img/s (peak RSS $rss MiB), PyTorch $torch img/s, ratio ${ratio}x"
    echo "  dfd-extract: $(RAYON_NUM_THREADS=$THREADS "$BIN/examples/roofline" --size "$SIZE" --cut "$cut" --img-per-s "$rust")"
done
