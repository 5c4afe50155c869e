# secureops: the two commands are `make run` and `make test`.
SWIFT ?= swift
SOCKET ?=
ARGS ?=

export PATH := $(PATH):/opt/swift/usr/bin

.PHONY: all deps build release run test test-asan test-tsan clean fuzz bench bench-quick soak check-sse-bridge

all: build

## Installs what is missing (liburing-dev and friends) with apt-get.
deps:
	@./scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product secureopsd
	$(SWIFT) build -c release --product secureops
	$(SWIFT) build -c release --product secureops-bench

## Builds release and runs secureopsd in the foreground on the default socket
## ($$XDG_RUNTIME_DIR/secureops/secureopsd.sock, /run/secureops/secureopsd.sock
## for root). Stop it with Ctrl-C. Extra flags: make run ARGS="--log-level debug".
run: release
	.build/release/secureopsd $(if $(SOCKET),--socket $(SOCKET)) $(ARGS)

## The whole test suite (unit and end-to-end against real daemons) on the
## default backend (io_uring here), the engine and daemon suites again on
## epoll, the release build `make run` uses, then both passes again under
## AddressSanitizer + LeakSanitizer (what CI runs; about 4 extra minutes
## from a fresh clone). ASAN=0 skips the sanitizer passes.
ASAN ?= 1
BACKEND_SUITES = SecureOpsDaemonTests|EmbeddingTests
# The async-client suites run in a pass of their own: Swift Testing runs
# synchronous tests on the cooperative pool (as wide as the machine: two
# threads here), and the end-to-end tests block their thread while a daemon
# works, which would starve the async clients' tasks of any thread at all.
CLIENT_ASYNC_SUITES = AsyncClient|ClientScriptedServer|ClientReconnect|ServiceLifecycle
ASYNC_SUITES = $(CLIENT_ASYNC_SUITES)|ForwarderTests
# The suites that run `swift build`/`swiftc` (a minute of both cores from a
# fresh clone) run in a pass of their own, after the rest: beside the
# fan-out and back-pressure tests they starve the subscribers those tests
# time, and a starved reader looks like a slow consumer.
BUILD_SUITES = PackageGraphTests|ExampleServerTests|ReadmeExamplesTests
# The unit tests (no daemon, no kernel but a socket pair here and there)
# run first, on their own: a time limit counts from a test's start, and
# queued behind minutes of end-to-end tests a 60-ms test could run out
# of its minute before it ran at all.
UNIT_SUITES = SecureOpsEngineTests\.|JournalTests\.|JSONTests\.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --filter '$(UNIT_SUITES)'
	$(SWIFT) test --skip-build --skip '$(UNIT_SUITES)|$(ASYNC_SUITES)|$(BUILD_SUITES)'
	$(SWIFT) test --skip-build --filter '$(BUILD_SUITES)'
	$(SWIFT) test --skip-build --filter '$(ASYNC_SUITES)'
	SECUREOPS_TEST_IO_BACKEND=epoll $(SWIFT) test --skip-build --filter '$(BACKEND_SUITES)' --skip '$(ASYNC_SUITES)|$(BUILD_SUITES)'
	SECUREOPS_TEST_IO_BACKEND=epoll $(SWIFT) test --skip-build --filter '$(CLIENT_ASYNC_SUITES)'
	@# What `make run` builds must build: release is whole-module, and once
	@# compiled what debug did not.
	$(SWIFT) build -c release --product secureopsd
	$(SWIFT) build -c release --product secureops
ifneq ($(ASAN),0)
	./scripts/test-sanitized.sh address --filter '$(UNIT_SUITES)'
	./scripts/test-sanitized.sh address --skip '$(UNIT_SUITES)|$(ASYNC_SUITES)|$(BUILD_SUITES)'
	./scripts/test-sanitized.sh address --filter '$(ASYNC_SUITES)'
	SECUREOPS_TEST_IO_BACKEND=epoll ./scripts/test-sanitized.sh address --filter '$(BACKEND_SUITES)' --skip '$(ASYNC_SUITES)|$(BUILD_SUITES)'
endif

## The whole suite under AddressSanitizer + LeakSanitizer, or ThreadSanitizer;
## fails on any finding in the tests, the daemons or the CLI they start.
test-asan: deps
	./scripts/test-sanitized.sh address

test-tsan: deps
	./scripts/test-sanitized.sh thread

## libFuzzer: FUZZ_TARGET=decoder|framer, FUZZ_SECONDS (default 600).
FUZZ_TARGET ?= decoder
FUZZ_SECONDS ?= 600
fuzz:
	./Fuzz/run.sh $(FUZZ_TARGET) $(FUZZ_SECONDS)

## The SSE bridge example in headless chromium (builds Hummingbird: minutes).
check-sse-bridge: deps
	./scripts/check-sse-bridge.sh

## secureopsd against Redis, side by side, on this machine: fan-out at 100 to
## 19,000 subscribers, rpc at 1/100/1,000 connections x pipeline 1/16, light-load
## latency, memory per subscriber; 3 runs per point, medians and ratios, a chart.
## Installs redis-server and matplotlib if missing. Results: bench-results/<time>/.
bench: deps
	./scripts/compare.sh

## The same with one run per point and fewer points (a few minutes).
bench-quick: deps
	QUICK=1 ./scripts/compare.sh

## The 10-minute soak (10,000 subscribers, churn, never-reading subscribers).
soak: deps
	./scripts/soak.sh

clean:
	rm -rf .build
