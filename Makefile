# Targets people look for: venv, redis, test, demo, train, bench, benchmark, segments, lint,
# clean.
# `make test` on a fresh clone does the whole set-up; re-runs skip what is done.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact pin matters: torch==2.13.0 is satisfied by the CPU wheel on local disk,
# while a range or a bare `torch` resolves to a CUDA build of several GB.
TORCH := torch==2.13.0
DEMO_ARGS ?=
# `make benchmark` trains and evaluates every model on each of these sets
BENCHMARK_SETS ?= ml-100k online_retail toys sports video_games
BENCHMARK_ARGS ?=
# `make segments` writes the segmentation report and personas of each of these sets
SEGMENT_SETS ?= online_retail ml-100k
# `make train` retrains once against KAFKA_BOOTSTRAP_SERVERS, e.g. TRAIN_ARGS='--every 3600'
TRAIN_ARGS ?=

.PHONY: venv redis test demo train bench benchmark segments lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e '.[dev]'
	touch $@

# Not fatal without apt-get: REDIS_URL or a Docker engine can stand in for a local binary.
redis:
	@if command -v redis-server >/dev/null 2>&1; then \
		echo "redis-server: $$(command -v redis-server)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends redis-server; \
	else \
		echo "redis-server not found. Install it (macOS: 'brew install redis';" \
			"Fedora: 'dnf install redis'; Debian/Ubuntu: 'apt-get install redis-server')," \
			"or set REDIS_URL to a running Redis." >&2; \
	fi

test: venv redis
	$(BIN)/pytest -m "not benchmark" -q

demo: venv redis
	$(BIN)/reco demo $(DEMO_ARGS)

train: venv
	$(BIN)/reco train $(TRAIN_ARGS)

bench: venv
	$(BIN)/python -m bench.run

benchmark: venv
	$(BIN)/reco benchmark $(BENCHMARK_SETS) $(BENCHMARK_ARGS)

segments: venv
	for set in $(SEGMENT_SETS); do $(BIN)/reco segments $$set || exit 1; done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas models streams bench tests

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .run demo-out *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
