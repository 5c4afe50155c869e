# secureops: the two commands are `make run` and `make test`.
SWIFT ?= swift
SOCKET ?=
ARGS ?=

export PATH := $(PATH):/opt/swift/usr/bin

.PHONY: all deps build release run test test-fast clean fuzz bench

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

## The whole test suite (unit and end-to-end against real daemons).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

clean:
	rm -rf .build
