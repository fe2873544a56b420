#!/usr/bin/env bash
# Whole-experiment time: experiment 5's pipeline (128 px, 4 augmented copies, layer3 maps, layer4
# fine-tuned for 5 epochs) on COUNT generated 600 px photos with random:0 weights, every stage
# timed with its wall clock. `make bench-pipeline` runs it.
#
#   scripts/bench_pipeline.sh                 # COUNT=2000 THREADS=2 BENCH_DIR=/tmp/dfd-bench
#   COUNT=200 scripts/bench_pipeline.sh       # a quick look
#   COMPUTE=bf16 scripts/bench_pipeline.sh    # extract.compute = train.compute = "bf16"
#
# The data set is made once (dfd-demo-data is deterministic); each run starts from empty caches
# under $BENCH_DIR/pipeline-<count>/data and prints one line per stage and the total.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-2000}
THREADS=${THREADS:-2}
BENCH_DIR=${BENCH_DIR:-/tmp/dfd-bench}
CARGO=${CARGO:-cargo}
COMPUTE=${COMPUTE:-f32}
BIN=${CARGO_TARGET_DIR:-target}/release

$CARGO build --release -q --bins
root="$BENCH_DIR/pipeline-$COUNT"
"$BIN/dfd-demo-data" --out "$root/raw" --count "$COUNT" --size 600 >/dev/null
rm -rf "$root/data"
mkdir -p "$root/data"
pipeline="$root/exp5-bench.toml"
# Experiment 5 as committed, pointed at the generated photos, with random weights.
sed -e "s|^name = .*|name = \"bench$COUNT\"|" \
    -e "s|^source = .*|source = \"$root/raw\"|" \
    -e 's|^classes = .*|classes = { real = 0, fake = 1 }|' \
    -e '/^\[extract\]/a weights = "random:0"' \
    -e "/^\\[extract\\]/a compute = \"$COMPUTE\"" \
    -e "/^\\[train\\]/a compute = \"$COMPUTE\"" \
    pipelines/exp5-finetune-128.toml >"$pipeline"

total=0
for stage in preprocess extract train evaluate; do
    start=$(date +%s.%N)
    RAYON_NUM_THREADS=$THREADS DFD_THREADS=$THREADS NO_COLOR=1 RUST_LOG=warn \
        "$BIN/dfd-$stage" --config "$pipeline" --data-dir "$root/data" >"$root/$stage.log" 2>&1 || {
        echo "bench-pipeline: $stage failed, see $root/$stage.log"
        exit 1
    }
    seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    total=$(python3 -c "print(f'{$total + $seconds:.1f}')")
    echo "bench-pipeline: exp5 on $COUNT photos of 600 px, $THREADS threads, $COMPUTE: $stage $seconds s"
done
echo "bench-pipeline: total $total s"
