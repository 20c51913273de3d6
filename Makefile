# Two commands on a fresh machine: `make demo` (the main job: built-in data, both training stages, the gap at
# every curriculum phase, compare and the HTML report in reports/demo/, ~5 min on 2 CPU cores) and `make test`.
# Both create the virtualenv in $(VENV) on first use.
VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch; set TORCH='torch==X.Y.Z' (or a CUDA build's spec) to use another.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: demo test bench install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH)'
	$(PY) -m pip install -q -e '.[dev]'
	# lpips ships the linear weights LPIPS reads as data; --no-deps keeps its torchvision pin from replacing torch.
	$(PY) -m pip install -q --no-deps lpips==0.1.4
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/sam3d-eval demo

test: $(VENV)/.installed
	$(PY) -m pytest -q
	$(PY) -m pytest benchmarks -q --quick --benchmark-disable -p no:cacheprovider

bench: $(VENV)/.installed
	$(PY) -m pytest benchmarks -q --benchmark-columns=min,median,mean,rounds
