# Thin wrapper over CMake. `make run` and `make test` are the two commands a newcomer needs.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
CONFIG ?= conf/wsgate.yaml
PYTHON ?= /usr/bin/python3

.PHONY: all deps build run test unit integration asan fuzz bench soak soak-idle mutants package clean format

all: build

deps:
	@bash packaging/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The .deb (CPack): build/wsgate_<version>_<arch>.deb; docs/operations.md, "Installing".
package: build
	@cd $(BUILD) && cpack -G DEB

run: build
	@bash packaging/run-demo.sh $(BUILD)/wsgate $(CONFIG)

# Every test: unit + integration on the normal build, the same under ASan+UBSan, a short fuzz run;
# and every hand-written mutant must still apply (the full `make mutants` run is too long for CI).
# Integration suites mostly wait on their peers and timers (a third of a core each, measured),
# so ctest runs more of them than there are cores: TEST_JOBS, ASAN_TEST_JOBS.
TEST_JOBS ?= 4
ASAN_TEST_JOBS ?= 3
test: build
	@bash tests/mutants/run.sh --check
	@cd $(BUILD) && ctest --output-on-failure -j $(TEST_JOBS)
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory fuzz

unit: build
	@cd $(BUILD) && ctest --output-on-failure -L unit

integration: build
	@cd $(BUILD) && ctest --output-on-failure -L integration

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWSGATE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(ASAN_TEST_JOBS)

fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DWSGATE_FUZZ=ON -DWSGATE_TESTS=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	@bash tests/fuzz/run-all.sh $(FUZZ_BUILD) $${FUZZ_SECONDS:-}

# Hand-written bugs (tests/mutants/*.mutant) the tests must catch; MUTANTS='http-*' picks some.
mutants: deps
	@bash tests/mutants/run.sh $(MUTANTS)

bench: build
	@bash tests/bench/run.sh $(BUILD) $(BENCH_ARGS)

# Not in `make test` (minutes; docs/reliability.md). `make soak`: the ASan+UBSan wsgate under echo
# traffic while backends are killed, clients reset mid-frame, readers stall and the config
# reloads; SOAK_SECONDS (300), SOAK_SESSIONS (3000), SOAK_RATE (1500 echoes/s) and the other
# SOAK_* knobs in tests/soak/soak.py. `make soak-idle`: one wsgate holding as many idle
# WebSockets as the open-files limit allows, over ws:// and wss:// (SOAK_IDLE_HOLD, 60 s).
soak: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWSGATE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS) --target wsgate
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target wsload
	@$(PYTHON) tests/soak/soak.py --wsgate $(ASAN_BUILD)/wsgate --wsload $(BUILD)/tests/bench/wsload \
	  --workdir $(ASAN_BUILD)/soak $(SOAK_ARGS)

soak-idle: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target wsgate wsload
	@$(PYTHON) tests/soak/max_idle.py --wsgate $(BUILD)/wsgate --wsload $(BUILD)/tests/bench/wsload \
	  --workdir $(BUILD)/soak-idle --both $(SOAK_ARGS)

format:
	@git ls-files '*.cpp' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
