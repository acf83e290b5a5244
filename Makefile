# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv themselves (spconv CPU wheel, or spconv-cu120 when nvidia-smi works).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRA := $(shell nvidia-smi >/dev/null 2>&1 && echo cu120 || echo cpu)
SEED ?= 0
DEMO_DATA ?= data/demo
DEMO_WORK ?= work_dirs/demo
DEMO_CONFIG ?= configs/occ_cpu_demo.py

.PHONY: demo test test-fast venv clean-demo

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRA)]"
	touch $@

venv: $(BIN)/.installed

# The main job on the synthetic default (about 15 min on a 2-core CPU): world -> infos ->
# pictures -> train the CPU demo config -> predict the held-out scenes -> evaluate model and
# class-prior baseline -> $(DEMO_WORK)/report/report.md.
demo: venv
	$(BIN)/python tools/make_synthetic.py --out $(DEMO_DATA) --seed $(SEED)
	$(BIN)/python tools/create_data.py --root $(DEMO_DATA)
	$(BIN)/python tools/vis_occ.py --root $(DEMO_DATA) --out $(DEMO_WORK)/vis --num 4
	$(BIN)/python tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK) --seed $(SEED) --cfg-options data_root=$(DEMO_DATA)
	$(BIN)/python tools/test.py $(DEMO_CONFIG) $(DEMO_WORK) --out $(DEMO_WORK)/pred --work-dir $(DEMO_WORK) --cfg-options data_root=$(DEMO_DATA)
	$(BIN)/python tools/demo_report.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK) --cfg-options data_root=$(DEMO_DATA)
	@echo "Report: $(DEMO_WORK)/report/report.md"

# The whole test suite, slow end-to-end tests included (this is what CI runs).
test: venv
	$(BIN)/python -m pytest -q tests

# Developer loop: everything but the slow end-to-end tests.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_WORK)
