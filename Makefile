# Enclave guest runtime: build, test, and boot.
# Guest binaries are static and reproducible byte for byte.

GO        ?= go
BIN       ?= bin
GOFLAGS_R := -trimpath -buildvcs=false
LDFLAGS_R := -s -w -buildid=
export CGO_ENABLED := 0
export GOFLAGS :=

# name:package pairs for every binary we ship.
BINARIES := \
	init:./init/cmd/init \
	qtsm-agent:./agent/cmd/qtsm-agent \
	qtsm:./agent/cmd/qtsm \
	qtenclave:./image/cmd/qtenclave

.PHONY: all build clib test unit race lint e2e demo fuzz bench clean

all: build

build:
	@mkdir -p $(BIN)
	@set -e; for pair in $(BINARIES); do \
		name=$${pair%%:*}; pkg=$${pair#*:}; \
		if [ -d "$$pkg" ]; then \
			echo "go build $$name"; \
			$(GO) build $(GOFLAGS_R) -ldflags='$(LDFLAGS_R)' -o $(BIN)/$$name $$pkg; \
		fi; \
	done

# The drop-in C libraries libqtsm and libnsm (agent/clib/README.md), built
# with the system C compiler into $(BIN)/clib. Their tests run in make unit
# (package agent/clib).
clib:
	$(MAKE) --no-print-directory -C agent/clib OUT=$(abspath $(BIN))/clib

# staticcheck is pinned as a tool in go.mod (go get -tool), fetched from the
# Go module proxy on first use.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) tool staticcheck ./...

unit:
	$(GO) test -count=1 ./...

# make test is what CI runs: lint, unit tests, the end-to-end boot (which
# installs what it needs, a C compiler among it), then the race detector.
test: lint unit
	@if [ -x scripts/e2e.sh ]; then scripts/e2e.sh; else echo "e2e: scripts/e2e.sh not present yet, skipped"; fi
	@$(MAKE) --no-print-directory race

# The unit tests again under the race detector, which needs cgo and a C
# compiler (scripts/deps.sh installs one); skipped with a message without.
race:
	@if command -v $${CC:-cc} >/dev/null 2>&1; then \
		echo "CGO_ENABLED=1 $(GO) test -race -count=1 ./..."; \
		CGO_ENABLED=1 $(GO) test -race -count=1 ./...; \
	else echo "race: no C compiler ($${CC:-cc}): skipped (run scripts/deps.sh)"; fi

e2e:
	scripts/e2e.sh

# The main job: build the demo EIF from an OCI image and boot it under QEMU.
demo:
	scripts/demo.sh

# Each fuzz target runs FUZZTIME (default 5m).
FUZZTIME ?= 5m
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	@if [ -x scripts/bench/run.sh ]; then scripts/bench/run.sh; fi

clean:
	rm -rf $(BIN) out
