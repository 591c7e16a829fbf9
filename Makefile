# Thin wrapper over CMake: the README's commands. `make` builds everything;
# `make demo` and `make test` also install what they need first.
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_BUILD_TYPE ?= RelWithDebInfo

.PHONY: all build asan deps test-deps demo test bench docs install clean

all: build

deps:
	@scripts/install-deps

test-deps:
	@scripts/install-deps --test

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD)

# Address + undefined-behaviour sanitizer build (used by `make test`).
asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DBALLAST_SANITIZE=ON -DBALLAST_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD)

demo: build
	$(BUILD)/ballast demo

test: test-deps
	@$(MAKE) --no-print-directory build asan
	@scripts/run-tests $(BUILD) $(ASAN_BUILD)

bench: test-deps build
	bench/run

docs: build
	$(BUILD)/ballast config-reference > docs/configuration.md

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
