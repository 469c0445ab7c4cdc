# Entry points that work on a fresh machine: `make demo`, `make test` and (as root on Debian, which it
# installs Slurm, Chromium and the claude CLI on) `make test-integration`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-cpus test-integration lint bench clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the CPU build that this machine serves; a CUDA machine may install its own.
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The connectome JSON comes from the flyvis package, installed as a data carrier only.
	$(BIN)/python -m pip install -q --no-deps "flyvis==1.2.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m agent.run --instructions instruction_flyvis_62_1_gs_alternate.md \
		--config configs/flyvis_demo_cpu.yaml --run-dir runs/demo --llm offline --iterations 8 --fresh

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The tests marked `numerics` (floats that depend on torch's CPU kernels) under each kernel set torch has on x86-64,
# so one CPU proves what several would. A CPU without AVX-512 falls back silently: each run says what torch used.
CPU_CAPABILITIES := default avx2 avx512
test-cpus: $(STAMP)
	@for cap in $(CPU_CAPABILITIES); do \
		used=$$(ATEN_CPU_CAPABILITY=$$cap $(BIN)/python -c "import torch; print(torch.backends.cpu.get_cpu_capability())"); \
		echo "== ATEN_CPU_CAPABILITY=$$cap: torch uses $$used"; \
		[ "$$(echo $$used | tr A-Z a-z)" = "$$cap" ] || echo "   this CPU lacks $$cap: torch fell back to $$used"; \
		ATEN_CPU_CAPABILITY=$$cap $(BIN)/python -m pytest -q -p no:cacheprovider \
			-m "numerics and not slow and not gpu and not browser and not real" || exit 1; \
	done

# Tests marked `real` and `browser`: a real one-node Slurm, the real claude CLI and the anthropic SDK over TCP
# against a fake API on 127.0.0.1, headless Chromium. See tests/integration/run.sh.
test-integration: $(STAMP)
	PY=$(BIN)/python bash tests/integration/run.sh

# lint-imports: the layer contracts of pyproject.toml (under a second; `make test` runs them too, tests/test_layering.py).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_train.py
