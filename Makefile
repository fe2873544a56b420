# Drives the stages. Each stage writes runs/<pipeline>/<run-id>/stages/<stage>.done when finished,
# and each marker depends on the previous one: `make` after a kill resumes (the stages themselves
# skip finished shards/epochs), `make` on a finished run does nothing.
#
#   make demo                                   generate the demo data and run the whole chain
#   make test                                   every test (what CI runs)
#   make all PIPELINE=pipelines/exp1-mlp-224.toml
#   make preprocess|extract|train|evaluate PIPELINE=...
#   make clean-run PIPELINE=...                 forget a run (not the shared image/feature caches)
#   make evaluate-on ON=<pipeline or folder> PIPELINE=...   score the run on all of another data set
#   make compare                                every evaluated run side by side: runs/comparison.{md,html,csv}
#   make bench                                  all benchmarks, with the PyTorch peer

PIPELINE ?= pipelines/recommended.toml
DATA ?= $(or $(DFD_DATA_DIR),data)
RUN_ID ?= main
CARGO ?= cargo
FEATURES ?=
# The binaries cargo builds: under CARGO_TARGET_DIR when set (a shared target directory), else
# ./target.
BIN := $(or $(CARGO_TARGET_DIR),target)/release
NAME := $(basename $(notdir $(PIPELINE)))
RUN := $(DATA)/runs/$(NAME)/$(RUN_ID)
ARGS := --config $(PIPELINE) --data-dir $(DATA) --run-id $(RUN_ID)
STAGES := preprocess extract train evaluate

.PHONY: all build build-cuda compare evaluate-on test demo bench bench-pipeline bench-preprocess bench-extract bench-train bench-model bench-pairs clean-run $(STAGES)

all: $(RUN)/stages/evaluate.done
	@echo "Report: $(RUN)/eval/report.html"

build:
	$(CARGO) build --release --bins $(if $(FEATURES),--features $(FEATURES))

# The CUDA binaries without a CUDA toolkit (NVIDIA's pip wheels), into target/cuda/.
build-cuda:
	scripts/build-cuda.sh

preprocess: $(RUN)/stages/preprocess.done
extract: $(RUN)/stages/extract.done
train: $(RUN)/stages/train.done
evaluate: $(RUN)/stages/evaluate.done

$(RUN)/stages/preprocess.done: $(PIPELINE) | build
	$(BIN)/dfd-preprocess $(ARGS)
$(RUN)/stages/extract.done: $(RUN)/stages/preprocess.done | build
	$(BIN)/dfd-extract $(ARGS)
$(RUN)/stages/train.done: $(RUN)/stages/extract.done | build
	$(BIN)/dfd-train $(ARGS)
$(RUN)/stages/evaluate.done: $(RUN)/stages/train.done | build
	$(BIN)/dfd-evaluate $(ARGS)

# Another data set scored by the run: ON is a pipeline file (its [dataset]) or a folder with the
# run's class sub-folders. Outputs in $(RUN)/eval/<name>/; rerunning with nothing changed does nothing.
evaluate-on: $(RUN)/stages/train.done | build
	@test -n "$(ON)" || { echo "make evaluate-on needs ON=<pipeline file or folder>"; exit 2; }
	$(BIN)/dfd-evaluate $(ARGS) --on $(ON)

clean-run:
	rm -rf $(RUN)

# The study's table over every evaluated run of $(DATA) (not only $(PIPELINE)'s).
compare: build
	$(BIN)/dfd-compare --data-dir $(DATA)

# The demo: drawn faces, the whole chain, pretrained weights when the hub answers, else random
# ones (said plainly). The resolved demo pipeline is written to $(DATA)/demo.toml.
DEMO_CFG := $(DATA)/demo.toml
demo: build
	$(BIN)/dfd-demo-data --out $(DATA)/raw/demo
	@mkdir -p $(DATA)
	@if $(BIN)/dfd-extract --config pipelines/demo.toml --data-dir $(DATA) --check-weights; then \
		cp pipelines/demo.toml $(DEMO_CFG).new; \
	else \
		echo "*** The Hugging Face hub cannot be reached and no weights are cached:"; \
		echo "*** the demo runs with RANDOM weights (random:0), NOT pretrained ones."; \
		sed 's|^weights = .*|weights = "random:0"|' pipelines/demo.toml > $(DEMO_CFG).new; \
	fi
	@cmp -s $(DEMO_CFG).new $(DEMO_CFG) || mv $(DEMO_CFG).new $(DEMO_CFG); rm -f $(DEMO_CFG).new
	$(MAKE) --no-print-directory all PIPELINE=$(DEMO_CFG) DATA=$(DATA) RUN_ID=$(RUN_ID)

test:
	$(CARGO) test --workspace

# Benchmarks, each side by side with its Python peer on the same machine (pip install torch
# torchvision pillow numpy). Run them on a quiet machine: on 2 cores a parallel build halves every
# figure. BENCH_DIR holds the generated inputs.
BENCH_DIR ?= /tmp/dfd-bench
bench: bench-preprocess bench-extract bench-train bench-model

bench-preprocess:
	@test -d $(BENCH_DIR)/jpeg600 || python3 scripts/bench_pillow.py make $(BENCH_DIR)/jpeg600 300
	python3 scripts/bench_pillow.py run $(BENCH_DIR)/jpeg600 224
	$(CARGO) run --release -q -p dfd-imaging --example bench_decode_resize -- $(BENCH_DIR)/jpeg600 224

bench-extract:
	scripts/bench_extract.sh

# Whole-experiment time: experiment 5 on 2,000 generated 600 px photos, each stage's wall time.
bench-pipeline:
	BENCH_DIR=$(BENCH_DIR) COMPUTE=$(COMPUTE) scripts/bench_pipeline.sh

# The model benches' arithmetic: f32, or bf16 (a CPU with AVX512-BF16, or DFD_BF16=emulate), on
# both sides (PyTorch runs bf16 as autocast).
COMPUTE ?= f32

bench-train:
	$(CARGO) run --release -q -p dfd-train --example bench_train -- --head mlp --compute $(COMPUTE)
	python3 scripts/bench_torch.py --compute $(COMPUTE) train --head mlp --batch 64
	$(CARGO) run --release -q -p dfd-train --example bench_train -- --head finetune --map 14 --compute $(COMPUTE)
	python3 scripts/bench_torch.py --compute $(COMPUTE) train --head finetune --map 14 --batch 64
	$(CARGO) run --release -q -p dfd-train --example bench_train -- --head finetune --map 8 --compute $(COMPUTE)
	python3 scripts/bench_torch.py --compute $(COMPUTE) train --head finetune --map 8 --batch 64

# Alternating pairs (ours, then PyTorch) of every model bench, with medians and ranges.
PAIRS ?= 5
bench-pairs:
	$(CARGO) build --release -q -p dfd-model --example bench_forward -p dfd-train --example bench_train
	python3 scripts/bench_pairs.py --pairs $(PAIRS) --compute $(COMPUTE)

bench-model:
	$(CARGO) run --release -q -p dfd-model --example bench_forward -- --size 224 --batch 8 --cut pooled --compute $(COMPUTE)
	python3 scripts/bench_torch.py --compute $(COMPUTE) extract --size 224 --cut pooled --batch 8 --images 64
