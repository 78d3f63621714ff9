# Multi-module Makefile: every target loops over the modules listed in go.work,
# because `go test ./...` at the root of a workspace does not reach them.
GO ?= go
SHELL := /bin/bash
MODULES := $(shell $(GO) work edit -json | grep -o '"DiskPath": "[^"]*"' | sed 's/.*"\.\/\(.*\)"/\1/')

TEST_TIMEOUT ?= 15m
BIN := bin/ledger

.PHONY: all build run test bench lint tidy-check fuzz release clean $(addprefix test/,$(MODULES))

all: lint test

build:
	$(GO) build -o $(BIN) ./cmd/ledger

## run: build the ledger binary, play 4 October 2023 on the embedded default
## and write the day as a self-contained HTML page (REPORT).
REPORT ?= bin/demo-report.html
run: build
	./$(BIN) demo --report $(REPORT)
	@echo "report: $(abspath $(REPORT))"

## test: race-enabled tests of every module in go.work.
test: $(addprefix test/,$(MODULES))

$(addprefix test/,$(MODULES)): test/%:
	@echo "=== module $*"
	cd $* && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

## bench: benchmarks of every module (figures, not assertions).
bench:
	@for m in $(MODULES); do \
		echo "=== module $$m"; \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...) || exit 1; \
	done

## lint: gofmt and go vet over every module.
lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

## tidy-check: fail if any go.mod or go.sum is not tidy.
tidy-check:
	@for m in $(MODULES); do \
		(cd $$m && cp go.mod /tmp/go.mod.bak && { cp go.sum /tmp/go.sum.bak 2>/dev/null || true; } && \
		$(GO) mod tidy && \
		if ! git diff --quiet -- go.mod go.sum; then echo "module $$m is not tidy"; git diff -- go.mod go.sum; exit 1; fi) || exit 1; \
	done

## release: cut VERSION of every module (make release VERSION=v0.1.0) into a
## module proxy directory, RELEASE_PROXY, and check that a fresh module outside
## the workspace fetches it with go get and builds; TAG=1 also commits the
## release and tags it once per module (<folder>/VERSION), without pushing.
RELEASE_PROXY ?= bin/release-proxy
release:
	@test -n "$(VERSION)" || { echo "make release: VERSION is required, for example make release VERSION=v0.1.0"; exit 2; }
	rm -rf $(RELEASE_PROXY)
	cd testkit && $(GO) run ./cmd/release --repo .. --version $(VERSION) --proxy $(abspath $(RELEASE_PROXY)) --check $(if $(TAG),--tag)

clean:
	rm -rf bin
