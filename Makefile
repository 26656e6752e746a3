# Two commands on a fresh machine (Python 3.11-3.12 and make):
#   make demo   install (no test packages), replay sample_logs/ into a fresh store, serve the dashboard
#   make test   install with test extras, lint (ruff), run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
APP_STAMP := $(VENV)/.installed-app-$(CKSUM)
STAMP := $(VENV)/.installed-test-$(CKSUM)
DEMO_STORE := gatewatch-data/sample

.PHONY: install demo test bench clean

# compileall: an editable install is not byte-compiled, and with PYTHONDONTWRITEBYTECODE set
# (as on this project's machines) every gatewatch process would compile its modules again (0.14 s)
$(APP_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m compileall -q flows detectors sinks dashboards
	rm -f $(VENV)/.installed-app-* && touch $@

# the test extras (pytest, playwright, a Kafka broker …) only for make test and make bench
$(STAMP): $(APP_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-test-* && touch $@

install: $(APP_STAMP)

demo: $(APP_STAMP)
	rm -rf $(DEMO_STORE)
	$(BIN)/gatewatch replay sample_logs/*.log --store $(DEMO_STORE)
	$(BIN)/gatewatch dashboard --store $(DEMO_STORE)

# the dashboard browser test drives Debian chromium through playwright (never `playwright install`);
# the decision API test runs Debian's CrowdSec custom bouncer (without crowdsec itself: its setup needs the internet);
# the deployment test checks the systemd units with systemd-analyze verify; the Kafka TLS tests make certificates with openssl
test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v crowdsec-custom-bouncer >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends crowdsec-custom-bouncer)
	command -v systemd-analyze >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd)
	command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends openssl)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python tests/bench_replay.py --lines 1000000 --workdir bench-data
	$(BIN)/python tests/bench_replay.py --lines 1000000 --workdir bench-data --layouts w1 p2 --shards 1
	$(BIN)/python tests/bench_decoders.py --lines 1000000 --workdir bench-data
	$(BIN)/python tests/bench_memory.py --subjects 100000
	$(BIN)/python tests/bench_dashboard.py --rows 1000000 --workdir bench-data
	$(BIN)/python tests/bench_detection.py --seeds 1 2 3 4 5 --workdir bench-data/detection
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python tests/bench_api.py --workdir bench-data/api

clean:
	rm -rf $(VENV) bench-data
