# Thin wrapper around CMake; see README.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build test demo deps bench bench-filters bench-sched bench-airflow fuzz chaos clean

all: build

# Set-up, build, then the main job end to end against the Airflow simulator.
demo: build
	tests/demo.sh

deps:
	@.ci/install-deps

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j$(JOBS)

# Debug build with AddressSanitizer + UndefinedBehaviorSanitizer, then every test.
test: deps
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DAP_SANITIZE=ON >/dev/null
	cmake --build build-test -j$(JOBS)
	cd build-test && ctest --output-on-failure -j$(JOBS)

# Every benchmark (filters, bench-sched, webhook ingest with wrk vs a libevent
# ceiling) and a summary table; docs/BENCHMARKS.md has the figures.
bench: build
	tests/bench/run_bench.sh

bench-filters: build
	tests/bench/bench_filters.sh

# 10,000 services through the Airflow simulator: makespan, requests per agent run, RSS, CPU.
bench-sched: build
	build/bench_sched --services 10000

# 10,000 concurrent runs through the Airflow client and the simulator:
# requests/s, p50/p99 latency, peak RSS, CPU per tracked run.
bench-airflow: build
	build/bench_airflow --runs 10000

# kill -9 restarts under load, Airflow faults, a full / read-only disk; a table. See README.
chaos: build
	python3 tests/chaos/chaos.py

# libFuzzer targets (clang, ASan+UBSan) in build-fuzz/, each run FUZZ_SECONDS
# (default 60; FUZZ_SECONDS=600 for the full run); prints a table. See README.
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
fuzz: deps
	@.ci/install-fuzz-deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DAP_FUZZ=ON -DAP_WERROR=OFF >/dev/null
	cmake --build build-fuzz --target fuzzers -j$(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/run_fuzz.sh build-fuzz

clean:
	rm -rf build build-test build-fuzz
