#!/usr/bin/env bash
# Preprocess and extract on a Slurm cluster as job arrays: N tasks fill one shared layout with
# no coordinator (each writes its own shards; whoever finds every shard present writes the
# directory's index.json). Usage, from the repository root on the shared filesystem:
#
#   export DFD_DATA_DIR=/shared/dfd PIPELINE=pipelines/exp2-linear-400.toml N=8
#   pre=$(sbatch --parsable --array=0-$((N-1)) --export=ALL,STAGE=preprocess scripts/slurm-array.sh)
#   sbatch --dependency=afterok:$pre --array=0-$((N-1)) --export=ALL,STAGE=extract scripts/slurm-array.sh
#   # then, once: make train evaluate PIPELINE=$PIPELINE DATA=$DFD_DATA_DIR
#
# A task that fails or is pre-empted can simply be resubmitted: it redoes only its missing
# shards. The stage marker is written by the task that completes the last directory; a rerun of
# any one task afterwards also writes it. Extract on GPU nodes: build with
# `cargo build --release --features cuda` and add `--device cuda:0` below. The binaries are
# taken from $CARGO_TARGET_DIR/release when CARGO_TARGET_DIR is set, else target/release.
#
#SBATCH --job-name=dfd
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=dfd-%x-%A_%a.log
set -euo pipefail

: "${STAGE:?set STAGE=preprocess or STAGE=extract}"
: "${PIPELINE:?set PIPELINE=pipelines/<x>.toml}"
: "${DFD_DATA_DIR:?set DFD_DATA_DIR to the shared layout root}"

exec "${CARGO_TARGET_DIR:-target}/release/dfd-${STAGE}" \
    --config "$PIPELINE" \
    --data-dir "$DFD_DATA_DIR" \
    --shard-index "${SLURM_ARRAY_TASK_ID}" \
    --shard-count "${SLURM_ARRAY_TASK_COUNT}"

# Kubernetes: an Indexed Job does the same. Set `completionMode: Indexed`, `completions: N`,
# `parallelism: N`, mount the shared volume at DFD_DATA_DIR, and run
#   dfd-preprocess --config ... --shard-index "$JOB_COMPLETION_INDEX" --shard-count N
# (Kubernetes sets JOB_COMPLETION_INDEX in each pod); a second Indexed Job runs dfd-extract the
# same way once the first has succeeded.
