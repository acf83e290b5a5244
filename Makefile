# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv themselves (spconv CPU wheel, or spconv-cu120 when nvidia-smi works).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRA := $(shell nvidia-smi >/dev/null 2>&1 && echo cu120 || echo cpu)
SEED ?= 0
DEMO_DATA ?= data/demo
DEMO_WORK ?= work_dirs/demo

.PHONY: demo test test-fast venv clean-demo

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRA)]"
	touch $@

venv: $(BIN)/.installed

# The main job on the synthetic default: world -> infos -> pictures (later: train, test, evaluate, report).
demo: venv
	$(BIN)/python tools/make_synthetic.py --out $(DEMO_DATA) --seed $(SEED)
	$(BIN)/python tools/create_data.py --root $(DEMO_DATA)
	$(BIN)/python tools/vis_occ.py --root $(DEMO_DATA) --out $(DEMO_WORK)/vis --num 4

# The whole test suite, slow end-to-end tests included (this is what CI runs).
test: venv
	$(BIN)/python -m pytest -q tests

# Developer loop: everything but the slow end-to-end tests.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_WORK)
