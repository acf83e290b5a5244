# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv themselves (spconv CPU wheel, or spconv-cu121 when nvidia-smi works).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRA := $(shell nvidia-smi >/dev/null 2>&1 && echo cu121 || echo cpu)
SEED ?= 0
DEMO_DATA ?= data/demo
DEMO_WORK ?= work_dirs/demo
DEMO_CONFIG ?= configs/occ_cpu_demo.py
# Towns of a seed never used in development, scored beside the held-out town (3 towns x 8
# keyframes, ~25 s to generate; --val-fraction 0.9 holds all three out: no training split).
UNSEEN_DATA ?= data/demo_unseen
UNSEEN_SEED ?= 31337

.PHONY: demo test test-fast venv clean-demo device-wheels

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRA)]"
	touch $@

venv: $(BIN)/.installed

# The main job on the synthetic default (about 15 min on a 2-core CPU): world (8 towns x 40
# keyframes, 2 towns = 80 keyframes held out for validation) -> infos ->
# pictures -> train the CPU demo config -> predict the held-out scenes and the towns of an
# unseen seed -> evaluate model and class-prior baseline on both -> $(DEMO_WORK)/report/report.md.
demo: venv
	$(BIN)/python tools/make_synthetic.py --out $(DEMO_DATA) --seed $(SEED) --scenes 8 --val-fraction 0.25
	$(BIN)/python tools/create_data.py --root $(DEMO_DATA)
	$(BIN)/python tools/vis_occ.py --root $(DEMO_DATA) --out $(DEMO_WORK)/vis --num 4
	$(BIN)/python tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK) --seed $(SEED) --data-root $(DEMO_DATA)
	$(BIN)/python tools/test.py $(DEMO_CONFIG) $(DEMO_WORK) --out $(DEMO_WORK)/pred --work-dir $(DEMO_WORK) --data-root $(DEMO_DATA)
	$(BIN)/python tools/make_synthetic.py --out $(UNSEEN_DATA) --seed $(UNSEEN_SEED) --scenes 3 --frames 8 --val-fraction 0.9
	$(BIN)/python tools/create_data.py --root $(UNSEEN_DATA)
	$(BIN)/python tools/test.py $(DEMO_CONFIG) $(DEMO_WORK) --out $(DEMO_WORK)/pred_unseen --work-dir $(DEMO_WORK) --data-root $(UNSEEN_DATA)
	$(BIN)/python tools/demo_report.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK) --data-root $(DEMO_DATA) \
		--unseen-root $(UNSEEN_DATA) --unseen-label "seed $(UNSEEN_SEED), 3 towns"
	@echo "Report: $(DEMO_WORK)/report/report.md"

# The whole test suite, slow end-to-end tests included (this is what CI runs).
test: venv
	$(BIN)/python -m pytest -q tests

# Developer loop: everything but the slow end-to-end tests.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

clean-demo:
	rm -rf $(DEMO_DATA) $(UNSEEN_DATA) $(DEMO_WORK)

# Wheels for the GPU check (tools/device_check.sh, docs/PERFORMANCE.md "GPU check"): what the GPU
# machine's python3 (3.12, torch preinstalled, no package registry) lacks, from
# tools/device_requirements.txt, downloaded here for CPython 3.12 / manylinux x86-64 into an ignored
# folder that the device tool carries (at most 64 MiB per command, working tree included).
DEVICE_WHEELS ?= .device_wheels
device-wheels:
	mkdir -p $(DEVICE_WHEELS)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(DEVICE_WHEELS) -r tools/device_requirements.txt
	@du -ch $(DEVICE_WHEELS)/*.whl | tail -1 | sed 's/total/in $(DEVICE_WHEELS) (the carry limit is 64 MiB, working tree included)/'
	@git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | \
		awk '{printf "working tree that travels with it (tracked + untracked, not ignored): %.1f MiB\n", $$1 / 1048576}'
