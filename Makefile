# streamer: every target creates and uses the local virtual environment .venv itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA_PORT ?= 9092
export KAFKA_PORT

.DEFAULT_GOAL := help
.PHONY: help install lint test test-unit test-integration bench-mask bench bench-quick kafka-up kafka-down demo run clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install streamer with its dev tools

lint: $(STAMP) ## ruff check, ruff format --check, mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-unit: $(STAMP) ## unit tests only (no broker)
	$(PY) -m pytest -m "not integration" tests

test-integration: $(STAMP) ## integration tests (start their own Kafka on a free port)
	$(PY) -m pytest -m integration tests

test: lint $(STAMP) ## lint, then every test: unit and integration (a broker is started for them)
	$(PY) -m pytest tests

bench-mask: $(STAMP) ## masking core throughput vs a json.loads+json.dumps round trip
	$(PY) -m bench.mask

bench: $(STAMP) ## bench-mask (~14 min), then `streamer run` end to end vs a pass-through on a local Kafka (~10 min)
	$(PY) -m bench.mask
	$(PY) -m bench.e2e

bench-quick: $(STAMP) ## small end-to-end bench: 20,000 events at 4 KB, 10 s of steady load (~1 min)
	$(PY) -m bench.e2e --quick

# Without STREAMER_BOOTSTRAP_SERVERS, demo and run start the local Kafka (kafka-up) and use it.
ifeq ($(STREAMER_BOOTSTRAP_SERVERS),)
LOCAL_KAFKA := kafka-up
KAFKA_ENV := STREAMER_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT)
endif

demo: $(STAMP) $(LOCAL_KAFKA) ## the product on the bundled Conductor events: raw vs public vs archive
	$(KAFKA_ENV) $(VENV)/bin/streamer demo

run: $(STAMP) $(LOCAL_KAFKA) ## the long-running service (creates the topics first; Ctrl-C stops it)
	$(KAFKA_ENV) $(VENV)/bin/streamer topics create
	$(KAFKA_ENV) $(VENV)/bin/streamer run

kafka-up: $(STAMP) ## start a local single-node Kafka on 127.0.0.1:$KAFKA_PORT (jars from Maven Central)
	$(PY) -m streamer.localkafka up

kafka-down: $(STAMP) ## stop the local Kafka started by kafka-up
	$(PY) -m streamer.localkafka down

clean: kafka-down ## stop the local Kafka and remove build caches (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis bench-results
