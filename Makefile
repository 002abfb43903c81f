# Thin wrapper around CMake; see README.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build test demo deps bench bench-filters bench-sched clean

all: build

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

bench-filters: build
	tests/bench/bench_filters.sh

# 10,000 services through the Airflow simulator: makespan, requests per agent run, RSS, CPU.
bench-sched: build
	build/bench_sched --services 10000

clean:
	rm -rf build build-test
