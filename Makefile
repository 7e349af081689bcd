# `make test` and `make demo` work from a fresh clone: they build the venv and fetch Prometheus (and, for the
# tests, VictoriaMetrics) themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMETHEUS_DIR := .tools/prometheus
export SLO_GUARD_PROMETHEUS_BIN := $(CURDIR)/$(PROMETHEUS_DIR)/usr/bin
VICTORIA_METRICS_DIR := .tools/victoria-metrics
export SLO_GUARD_VICTORIA_METRICS_BIN := $(CURDIR)/$(VICTORIA_METRICS_DIR)/usr/bin

.PHONY: test lint unit demo bench bench-scale-out soak clean openssl chromium

$(BIN)/slo-guard: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[dev]'
	touch $@

$(PROMETHEUS_DIR)/usr/bin/prometheus:
	scripts/install-prometheus.sh $(PROMETHEUS_DIR)

$(VICTORIA_METRICS_DIR)/usr/bin/victoria-metrics:
	scripts/install-victoria-metrics.sh $(VICTORIA_METRICS_DIR)

lint: $(BIN)/slo-guard
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The webhook tests make their TLS certificates with the openssl CLI.
openssl:
	@command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }

# The browser tests drive Debian's Chromium, never a downloaded browser build; DejaVu has the state glyphs.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core; }

test: lint openssl chromium $(PROMETHEUS_DIR)/usr/bin/prometheus $(VICTORIA_METRICS_DIR)/usr/bin/victoria-metrics
	$(BIN)/pytest $(PYTEST_ARGS)

demo: $(BIN)/slo-guard $(PROMETHEUS_DIR)/usr/bin/prometheus
	PYTHONPATH=$(CURDIR) $(BIN)/python scripts/demo.py

# The README's Scale table: 100 and 1,000 SLOs, ours and naive, one replica.
bench: $(BIN)/slo-guard $(PROMETHEUS_DIR)/usr/bin/prometheus
	PYTHONPATH=$(CURDIR) $(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

# 5,000 SLOs on one replica at 60 s, 1,000 and 3,000 SLOs on 2 and 3 sharded replicas, then the reaction latency
# with and without rules at 1,000 SLOs (well over an hour).
bench-scale-out: $(BIN)/slo-guard $(PROMETHEUS_DIR)/usr/bin/prometheus
	PYTHONPATH=$(CURDIR) $(BIN)/python -m benchmarks.scale --sizes 5000 --modes ours --interval 60 --cycles 3 \
		--warmup-cycles 1 $(BENCH_ARGS)
	PYTHONPATH=$(CURDIR) $(BIN)/python -m benchmarks.scale --sizes 1000,3000 --modes ours --shards 2,3 $(BENCH_ARGS)
	PYTHONPATH=$(CURDIR) $(BIN)/python -m benchmarks.reaction --sizes 1000

soak: $(BIN)/slo-guard $(PROMETHEUS_DIR)/usr/bin/prometheus
	PYTHONPATH=$(CURDIR) $(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .tools .mypy_cache .pytest_cache .ruff_cache
