# smelt developer entry points. `make demo` and `make test` work from a fresh
# clone (Rust toolchain + python3 with venv support needed); see README.md.

CARGO   ?= cargo
PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
# Stamp so that the venv is (re)installed only when the pins change.
VENV_OK := $(VENV)/.installed
CASES   ?= .cache/onnx-node
CONF_JSON := .cache/conformance.json
SMELT   := $(CARGO) run --quiet --release -p smelt --

# The onnx version pinned for the venv; the cases record theirs in VERSION.
ONNX_PIN := $(shell sed -n 's/^onnx==//p' scripts/requirements.txt)

FIXTURES := resnet_mini resnet_mini_shape transformer_block

.PHONY: prereqs bench-cpu bench-1b all demo check-examples test conformance lint fixtures resnet50 time-resnet50 venv cases help

all: test

help:
	@echo "make demo         build smelt, run examples/resnet_mini, compare with onnxruntime"
	@echo "make check-examples  run every committed example model, compare with onnxruntime"
	@echo "make test         the whole test suite (venv + conformance cases + cargo test --workspace)"
	@echo "make conformance  regenerate CONFORMANCE.md (interpreter) and CONFORMANCE-cpu.md (cpu target) from runs on $(CASES)"
	@echo "make lint         cargo fmt --check + clippy -D warnings"
	@echo "make fixtures     regenerate the committed models under examples/"
	@echo "make resnet50     generate .cache/resnet50 (ResNet-50 + input + expected, ~100 MB)"
	@echo "make time-resnet50  time the interpreter on it and compare with onnxruntime"
	@echo "make bench-cpu    cpu target vs onnxruntime (same threads) on ResNet-50, BERT-base, MLP"

venv: $(VENV_OK)

# System packages (CBC for ILP extraction, python3-venv, a C toolchain),
# checked once per clone and installed with apt only where missing.
PREREQS_OK := .cache/.prereqs-ok
prereqs: $(PREREQS_OK)
$(PREREQS_OK): scripts/prereqs.sh
	bash scripts/prereqs.sh
	@mkdir -p $(dir $@) && touch $@

# A half-made venv (e.g. python3-venv missing when it was created) has no pip:
# start over instead of failing on it forever.
$(VENV_OK): scripts/requirements.txt | $(PREREQS_OK)
	@if [ ! -x $(VENV)/bin/pip ]; then rm -rf $(VENV) && $(PYTHON3) -m venv $(VENV); fi
	$(VENV)/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
	@touch $@

cases: $(CASES)

# Generated only when missing (regenerating is `rm -rf $(CASES)`), into a
# temporary folder first so that an interrupted run leaves no half set behind.
$(CASES): | $(VENV_OK)
	@echo "generating ONNX backend node tests into $@"
	$(PY) scripts/gen_conformance.py $@.tmp
	rm -rf $@ && mv $@.tmp $@

demo: $(VENV_OK)
	$(CARGO) build --release -p smelt
	rm -rf out/demo
	mkdir -p out/demo
	$(SMELT) compile examples/resnet_mini/model.onnx --target cpu -o out/demo/resnet_mini.smc
	$(SMELT) run out/demo/resnet_mini.smc --input examples/resnet_mini/input_0.pb --output-dir out/demo
	$(PY) scripts/compare_tensors.py out/demo/output_0.pb examples/resnet_mini/expected_0.pb

check-examples: $(VENV_OK)
	$(CARGO) build --release -p smelt
	@for f in $(FIXTURES); do \
	  echo "== examples/$$f"; rm -rf out/$$f; \
	  $(SMELT) run examples/$$f/model.onnx --input examples/$$f/input_0.pb --output-dir out/$$f || exit 1; \
	  $(PY) scripts/compare_tensors.py out/$$f/output_0.pb examples/$$f/expected_0.pb || exit 1; \
	done

test: $(VENV_OK) $(CASES)
	@grep -qx "onnx $(ONNX_PIN)" $(CASES)/VERSION 2>/dev/null || \
	  echo "warning: $(CASES) was not generated with onnx $(ONNX_PIN); rm -rf it to regenerate"
	SMELT_CONFORMANCE_DIR=$(abspath $(CASES)) SMELT_PYTHON=$(abspath $(PY)) $(CARGO) test --workspace

# smelt may exit non-zero when cases fail; the table is still wanted then, as
# long as a fresh report was written.
conformance: $(VENV_OK) $(CASES)
	rm -f $(CONF_JSON)
	$(SMELT) conformance $(CASES) --target interp --json $(CONF_JSON) || test -s $(CONF_JSON)
	$(PY) scripts/conformance_table.py $(CONF_JSON) -o CONFORMANCE.md
	rm -f .cache/conformance-cpu.json
	$(SMELT) conformance $(CASES) --target cpu --json .cache/conformance-cpu.json || test -s .cache/conformance-cpu.json
	$(PY) scripts/conformance_table.py .cache/conformance-cpu.json -o CONFORMANCE-cpu.md

lint: $(PREREQS_OK)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fixtures: $(VENV_OK)
	@for f in $(FIXTURES); do $(PY) examples/$$f/make.py || exit 1; done

resnet50: .cache/resnet50/expected_0.pb

.cache/resnet50/expected_0.pb: examples/resnet50/make.py examples/resnet_mini/make.py examples/_fixture.py | $(VENV_OK)
	$(PY) examples/resnet50/make.py .cache/resnet50

time-resnet50: .cache/resnet50/expected_0.pb
	$(CARGO) build --release -p smelt
	rm -rf out/resnet50
	@t0=$$(date +%s%N); \
	$(SMELT) run .cache/resnet50/model.onnx --input .cache/resnet50/input_0.pb --output-dir out/resnet50 || exit 1; \
	echo "smelt run (interp) on ResNet-50: $$(( ($$(date +%s%N) - t0) / 1000000 )) ms"
	$(PY) scripts/compare_tensors.py out/resnet50/output_0.pb .cache/resnet50/expected_0.pb --rtol 1e-3 --atol 1e-3

# The 1B-parameter import/compile check of BENCHMARKS.md.
.cache/llama-1b/config.json: examples/checkpoints/make_1b.py | $(VENV_OK)
	$(PY) examples/checkpoints/make_1b.py .cache/llama-1b

bench-1b: .cache/llama-1b/config.json
	$(CARGO) build --release -p smelt
	mkdir -p out
	/usr/bin/time -v ./target/release/smelt import .cache/llama-1b -o /dev/null 2>&1 | grep -E "Elapsed|Maximum resident"
	/usr/bin/time -v ./target/release/smelt compile .cache/llama-1b --target cpu -o out/llama-1b.smelt 2>&1 | grep -E "Elapsed|Maximum resident"

# The cpu target against onnxruntime, in one run per model (BENCHMARKS.md).
BENCH_MODELS := resnet50 bert_base mlp
BENCH_THREADS ?= $(shell nproc)
.cache/models/%/model.onnx: | $(VENV_OK)
	$(PY) examples/models/make_all.py .cache/models --only $*

bench-cpu: $(foreach m,$(BENCH_MODELS),.cache/models/$(m)/model.onnx)
	$(CARGO) build --release -p smelt
	@for m in $(BENCH_MODELS); do \
	  ./target/release/smelt bench .cache/models/$$m --threads $(BENCH_THREADS) --iters 10 || exit 1; \
	done

# The GPU check (docs/gpu.md): gpu-bundle on the build machine (compiles the
# conformance cases and benchmarks for sm_90a into .cache/gpu-bundle(.tar.gz)),
# gpu-check on the GPU machine (needs only the bundle, python3 and torch).
.PHONY: gpu-bundle gpu-check
gpu-bundle: $(VENV_OK) $(CASES)
	PYTHON=$(abspath $(PY)) CASES=$(CASES) bash scripts/gpu-bundle.sh .cache/gpu-bundle

gpu-check:
	bash scripts/gpu-check.sh .cache/gpu-bundle
