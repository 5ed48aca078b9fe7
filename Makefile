# The README's two commands: `make demo` (the main job) and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint clean aarch64-check

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deeplab-edge demo --out report --force

# The GPU-path tests run on SwiftShader (a CPU Vulkan device from Debian's chromium-common, fetched with
# apt-get download into ~/.cache/deeplab-edge/swiftshader) where the machine has no GPU; without apt-get they
# skip with a one-line reason.
GPU_STAMP := $(VENV)/.gpu-device

$(GPU_STAMP): $(STAMP)
	-$(BIN)/deeplab-edge gpu --install-swiftshader
	touch $(GPU_STAMP)

test: $(STAMP) $(GPU_STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) $(GPU_STAMP)
	$(BIN)/python -m pytest -q -m slow

# The TF-free runtime on aarch64 under qemu-user (Debian arm64 Python + aarch64 wheels, cached in
# ~/.cache/deeplab-edge/aarch64): predict with every exported file, masks compared with x86, per CPU.
# MODELS=DIR picks the exported files (default: the demo's report/models, from `make demo`); OUT=DIR the
# folder for <date>-aarch64.md and .json (default benchmarks/results).
aarch64-check: $(STAMP)
	$(BIN)/python -m deeplab_edge.benchmarks.aarch64 --models $(or $(MODELS),report/models) \
		--out $(or $(OUT),benchmarks/results)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
