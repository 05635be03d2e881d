# One command for the main job, one for the tests; both create the environment when needed.
#   make demo   train an elastic U-Net on the built-in synthetic polyps, print the sub-net table,
#               export a depth-4 CPU model (ONNX) and run it
#   make test   run the test suite
#   make lint   ruff check + ruff format --check (CI runs it before the tests)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# The CPU build of torch; on a GPU machine install your CUDA build of torch first (or set TORCH=).
TORCH  ?= torch==2.13.0
STAMP   = $(VENV)/.installed
DEMO   ?= runs/demo

.PHONY: demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)")
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/elasticnet train --depths 3,4,5 --widths 0.5,1 --epochs 4 --out $(DEMO)
	$(BIN)/elasticnet export --checkpoint $(DEMO) --depth 4 --target cpu
	$(BIN)/elasticnet eval --model $(DEMO)/export-d4-w1-cpu

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/slicing.py
	$(BIN)/python benchmarks/loader.py --config experiments/synthetic.yaml
	$(BIN)/python benchmarks/allocator.py
	$(BIN)/python benchmarks/deploy.py
	$(BIN)/python benchmarks/ddp.py
	$(BIN)/python benchmarks/large_images.py --size 640x1024 --configs fp32,checkpoint

clean:
	rm -rf $(VENV) runs .pytest_cache
