# `make run` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: run test lint bench bench-reliability fuzz chromium clean

INSTALL_LOG := $(VENV)/install.log

# pip's own chatter goes to a log, shown only when the install fails.
$(STAMP): pyproject.toml
	@echo "sloscope: installing into $(VENV) (the first time takes about a minute; log in $(INSTALL_LOG))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e '.[test]'; } \
	  >$(INSTALL_LOG) 2>&1 || { tail -n 40 $(INSTALL_LOG); echo "sloscope: install failed: $(INSTALL_LOG)"; exit 1; }
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "sloscope: installed"

run: $(STAMP)
	@$(VENV)/bin/sloscope serve --demo --slos examples/demo/slos.yaml --notification-policy examples/demo/policy.yaml

# Browser tests drive Debian's Chromium; install it when it is missing (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); }

lint: $(STAMP)
	$(PY) -m ruff check .

# pytest exits 5 when it collected no test; make treats that as a failure, as it should.
test: $(STAMP) chromium lint
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# Each appends its table to docs/benchmarks.md (about 20 minutes in all on 2 cores).
bench: $(STAMP) chromium
	$(PY) bench/ingest.py
	$(PY) bench/queries.py
	$(PY) bench/slo_engine.py
	$(PY) bench/disk.py
	$(PY) bench/home.py
	$(PY) bench/trace_view.py
	$(PY) bench/canary.py

# Kill -9 twenty times under SDK load, then three times the sustainable load under the memory bound;
# each appends its table to docs/reliability/ (crash-loop.md, overload.md), about 10 minutes in all.
bench-reliability: $(STAMP)
	$(PY) bench/crash_loop.py
	$(PY) bench/overload.py
	$(PY) bench/outage.py

fuzz: $(STAMP)
	$(PY) -m pip install --quiet 'atheris>=2.3' 2>/dev/null || echo "atheris did not install: hypothesis and mutation loops only"
	$(PY) bench/fuzz.py

clean:
	rm -rf $(VENV) .sloscope-data
