# Everything a fresh machine needs is set up by these targets (Debian 12, Python >= 3.11).
#   make demo   run the exporter against its built-in simulator and show metrics
#   make test   run the whole test suite (lint, unit, integration, promtool, helm, end-to-end)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint proto rules dashboards bench clean lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml simulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]' -e ./simulator
	touch $@

# Debian's real Prometheus, promtool and Alertmanager for the rule and end-to-end tests; buildah, mmdebstrap
# and runc to build the image from the Dockerfile and run it, docker-registry to push it and the chart
# (tests/image, tests/release); shellcheck for actionlint; Chromium to render the SLO report (tests/report); jq for the
# runbooks' client-side filters (tests/alerts/test_runbooks.py).
SYSTEM_DEPS := prometheus prometheus-alertmanager buildah mmdebstrap runc docker-registry shellcheck chromium fonts-dejavu-core jq
SYSTEM_CMDS := promtool prometheus-alertmanager buildah mmdebstrap runc docker-registry shellcheck chromium jq
system-deps:
	@missing=; for c in $(SYSTEM_CMDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_DEPS) >/dev/null; \
	fi

demo: setup
	$(PY) -m cilium_node_simulator.demo

lint: setup
	$(VENV)/bin/ruff check .

# Three workers on two cores: the real-time end-to-end runs and the fault tests mostly wait (with two workers the
# suite used two thirds of the CPU); a third worker fills that time (README: measured durations).
test: setup system-deps lint
	$(VENV)/bin/pytest -n 3 --dist loadgroup $(PYTEST_ARGS)

# The image's dependency locks (versions and hashes), from pyproject.toml; the Dockerfile installs them with
# pip --require-hashes. Re-run after changing [project] dependencies or to take new releases.
lock: setup
	$(VENV)/bin/pip install -q pip-tools
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --output-file requirements/image.lock pyproject.toml
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --all-build-deps --only-build-deps --output-file requirements/build.lock pyproject.toml

proto: setup
	$(PY) scripts/gen_proto.py

rules: setup
	$(PY) -m alerts.generate

dashboards: setup
	$(PY) -m dashboards.generate
	$(PY) scripts/dashboards_guide.py

bench: setup
	$(PY) bench/decode.py
	$(PY) bench/hubble_stream.py
	$(PY) bench/exporter_rss.py
	$(PY) bench/install_size.py
	$(PY) -m bench.rules_cost
	$(PY) bench/report.py
	$(PY) bench/fleet.py
	$(PY) bench/fleet_replay.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
