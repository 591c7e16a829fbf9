# Thin wrapper over CMake: the README's commands. `make` builds everything;
# `make demo` and `make test` also install what they need first.
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_BUILD_TYPE ?= RelWithDebInfo

.PHONY: all build asan deps test-deps demo test bench bench-plots perf-gate docs install clean fuzz fuzz-smoke \
        chaos soak leakcheck deb package-test

all: build

deps:
	@scripts/install-deps

test-deps:
	@scripts/install-deps --test

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD)

# Address + undefined-behaviour sanitizer build (used by `make test`). It is
# compiled with clang where there is one (`make test` installs it), so every
# test run also holds the code to a second compiler's warnings.
ASAN_CC ?= $(if $(shell command -v clang 2>/dev/null),clang,cc)
# A build directory configured with another compiler starts afresh: CMake
# would otherwise drop its cache and, with it, the options below.
asan: deps
	@cc=$$(command -v $(ASAN_CC)); \
	if [ -f $(ASAN_BUILD)/CMakeCache.txt ] && \
	   ! grep -q "^CMAKE_C_COMPILER:[A-Z]*=$$cc$$" $(ASAN_BUILD)/CMakeCache.txt; then \
	  rm -rf $(ASAN_BUILD); \
	fi
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_COMPILER=$(ASAN_CC) -DBALLAST_SANITIZE=ON -DBALLAST_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD)

demo: build
	$(BUILD)/ballast demo

test: test-deps
	@$(MAKE) --no-print-directory build asan
	@scripts/run-tests $(BUILD) $(ASAN_BUILD)

# libFuzzer targets of tests/fuzz (scripts/fuzz), FUZZ_SECONDS each;
# fuzz-smoke is the 5-second run that `make test` includes.
FUZZ_SECONDS ?= 600
fuzz: test-deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz

fuzz-smoke: test-deps
	@FUZZ_SECONDS=5 scripts/fuzz

bench: test-deps build
	bench/run

# The curves and latency figures of build/bench/results.json as PNGs in
# docs/img/ (bench/plots; BENCH_RESULTS names other results files).
BENCH_RESULTS ?= build/bench/results.json
bench-plots: test-deps
	bench/plots $(BENCH_RESULTS)

# Instructions per message of four pipelines under callgrind against the
# budgets in bench/perf-budgets.json (scripts/perf-gate); `make test` runs it.
perf-gate: test-deps build
	@BALLAST_BUILD=$(BUILD) scripts/perf-gate

# The long form of the fault suites (scripts/run-faults), each in an environment
# of its own: the chaos test (tests/integration/test_chaos.c: process kills and
# stops, broker and PostgreSQL restarts), the network faults
# (tests/netlab/test_netfault.c) and the 3-broker cluster
# (tests/cluster/test_cluster.c), with seeded schedules CHAOS_SECONDS long in
# each delivery mode, then the history check; and the longest group-membership
# suites on the consumer group protocol (ctest label consumer-protocol-long). CHAOS_SEED=N replays a run's
# schedule; CHAOS_SUITES picks suites.
CHAOS_SECONDS ?= 1800
CHAOS_MODES ?=
CHAOS_SUITES ?= chaos netfault cluster consumer-protocol
chaos: test-deps build
	@CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_MODES=$(CHAOS_MODES) \
	  scripts/run-faults $(BUILD) $(CHAOS_SUITES)

# The long form of the resource-hygiene test (tests/integration/test_hygiene.c):
# fds, threads, RSS and children of `ballast run` flat across
# SOAK_REBALANCES rebalances and SOAK_RESTARTS exec handler restarts.
SOAK_REBALANCES ?= 1000
SOAK_RESTARTS ?= 100
soak: test-deps build
	@eval "$$(scripts/testenv up)" && trap 'scripts/testenv down' EXIT && \
	  BALLAST_HYGIENE_REBALANCES=$(SOAK_REBALANCES) BALLAST_HYGIENE_RESTARTS=$(SOAK_RESTARTS) \
	  $(BUILD)/tests/integration_test_hygiene

# The integration and cli suites on the sanitizer build, the spawned
# `ballast` processes included, with LeakSanitizer on; any sanitizer report
# fails the run (scripts/leakcheck).
leakcheck: test-deps asan
	@scripts/leakcheck $(ASAN_BUILD)

# The configuration reference, and the picture of src/'s layers (graphviz).
docs: build
	$(BUILD)/ballast config-reference > docs/configuration.md
	@if command -v dot >/dev/null && command -v tred >/dev/null; then \
	  scripts/layers --dot | tred | dot -Tpng -Gdpi=96 -o docs/layers.png; \
	else echo "graphviz (dot, tred) is not installed: docs/layers.png left as it is"; fi

install: build
	cmake --install $(BUILD)

# The Debian package for Debian 12 (scripts/make-deb): $(BUILD)/ballast_VERSION-1_ARCH.deb.
deb: build
	@scripts/make-deb $(BUILD)

# The package installed and run in a clean, minimal Debian 12 root made with
# debootstrap (scripts/package-test; needs root). `make test` runs it too, and
# says so when it has to skip it.
package-test: test-deps build
	@scripts/package-test "$$(scripts/make-deb $(BUILD))"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
