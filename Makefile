# The two set-up commands: `make run` (the main job) and `make test` (the test suite).
# Each installs what it needs first (scripts/install-deps.sh).

SWIFT ?= swift
BOOTSTRAP_FILE ?= .distilld/bootstrap

.PHONY: deps build run broker test bench clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release --product distilld

# The main job: the embedded broker, the daemon and the shipped teacher-rotation stream (`distilld demo`).
run: build
	.build/release/distilld demo

# Just the embedded broker with distilld's topics, for other clients (kcat, `distilld run`, `distilld replay`).
broker: build
	.build/release/distilld broker --topics streams/topics.yaml --bootstrap-file $(BOOTSTRAP_FILE)

# Builds everything (the interop test runs the distilld executable), then runs every test.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest

# Micro-benchmarks of the hot paths (release build); prints rates and ratios against in-run baselines.
bench: deps
	$(SWIFT) build -c release --product distilld-bench
	.build/release/distilld-bench

clean:
	rm -rf .build .distilld
