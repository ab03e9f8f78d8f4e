# The two set-up commands: `make run` (the main job) and `make test` (the test suite).
# Each installs what it needs first (scripts/install-deps.sh).

SWIFT ?= swift
BOOTSTRAP_FILE ?= .distilld/bootstrap

.PHONY: deps build run broker test bench reliability fuzz clean

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
# A crash prints symbol names only for the crashed thread: full symbolication of every thread of the debug test
# binary once ran until CI's time limit instead of failing the run.
test: deps
	$(SWIFT) build --build-tests
	SWIFT_BACKTRACE=$${SWIFT_BACKTRACE:-threads=crashed,symbolicate=fast} $(SWIFT) test --skip-build --disable-xctest

# Micro-benchmarks of the hot paths, then `distilld bench` end to end over the embedded broker (release build);
# every rate is printed beside baselines measured in the same run.
bench: deps
	$(SWIFT) build -c release --product distilld-bench
	$(SWIFT) build -c release --product distilld
	.build/release/distilld-bench
	.build/release/distilld bench

# The long reliability suite and the fuzzers; prints a table of figures (about 25 minutes).
reliability: deps
	bash scripts/reliability.sh

# The libFuzzer targets for FUZZ_SECONDS each (default 60).
fuzz: deps
	bash scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

clean:
	rm -rf .build .distilld
