# dhtd — make targets. `make run` starts a node, `make test` runs every test;
# both install what they need on a fresh machine.

GO        ?= go
BIN       ?= bin/dhtd
ARGS      ?=
FUZZTIME  ?= 60s
# Fuzz targets: package:FuzzName pairs.
FUZZ_TARGETS ?= ./krpc:FuzzDecode ./krpc:FuzzTransactions ./krpc:FuzzDecoderMatchesDecode ./node:FuzzHandleQuery ./node:FuzzHandleResponse ./storage:FuzzDBRecords ./gateway:FuzzGatewayRequest ./internal/httpguard:FuzzGuardCheck ./krpc:FuzzCodecMatchesReflect ./internal/pkarr:FuzzZBase32 ./internal/pkarr:FuzzParseRecord ./internal/pkarr:FuzzDecodePacket ./node/core:FuzzHandlePacket ./node/core:FuzzTraversal ./storage:FuzzDBFile ./krpc:FuzzScanner ./internal/conformance:FuzzDecode

.PHONY: all build run test test-short deps deps-system deps-js deps-anacrolix bench fuzz fuzz-smoke lint clean man completions install

all: build

# A static binary (CGO_ENABLED=0, Go's own resolver): it maps no libc,
# which saves about 1.5 MiB of resident memory. The urfave_cli_no_docs tag
# leaves out urfave/cli's Markdown and man-page generators (and the
# Markdown parser whose tables they build at every start); `dhtd man`
# writes its roff itself (cmd/dhtd/man.go).
BUILD_TAGS ?= urfave_cli_no_docs
build:
	CGO_ENABLED=0 $(GO) build -tags '$(BUILD_TAGS)' -o $(BIN) ./cmd/dhtd

## run: start a node with the default settings (public bootstrap routers).
run: build
	./$(BIN) run $(ARGS)

## deps: install what the tests need (python3-libtorrent for interop tests,
## chromium and chromium-driver for the status page's browser test, Node.js
## with the Pkarr JS client, npm pkarr 1.3.0, and webtorrent's DHT client,
## npm bittorrent-dht 11.0.12, for their interop tests, and the modules of
## the anacrolix/dht client program, which the interop test builds offline).
deps: deps-js deps-anacrolix
deps-system:
	@if /usr/bin/python3 -c 'import libtorrent' 2>/dev/null && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "python3-libtorrent, chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-libtorrent chromium chromium-driver >/dev/null; \
	else \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-libtorrent chromium chromium-driver >/dev/null; \
	fi

# The anacrolix/dht client program (testdata/interop/anacrolix) is a module
# of its own; the test builds it with GOPROXY=off, from the module cache.
deps-anacrolix:
	cd testdata/interop/anacrolix && $(GO) mod download

# The JavaScript clients go into testdata/js/node_modules (git-ignored),
# pinned by its package-lock.json.
deps-js: deps-system
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	@if [ -f testdata/js/node_modules/pkarr/package.json ] && [ -f testdata/js/node_modules/bittorrent-dht/package.json ]; then \
		echo "JS clients (pkarr, bittorrent-dht) present"; \
	else \
		cd testdata/js && npm ci --no-audit --no-fund; \
	fi

## test: lint, then every test with the race detector, then a short fuzz run.
test: deps lint
	$(GO) test -race -timeout 30m -count=1 ./...
	# The simulations at full size (1,000 nodes): -race runs them scaled down.
	$(GO) test -count=1 -timeout 15m -run 'TestSim' ./node
	$(MAKE) fuzz FUZZTIME=5s

test-short: lint
	$(GO) test -short -count=1 ./...

# staticcheck is installed into $(GOBIN_DIR) from the Go module proxy when
# it is missing (pinned version, so every machine runs the same checks).
STATICCHECK_VERSION ?= v0.8.2
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN_DIR)/staticcheck

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

## bench: Go benchmarks (-benchmem), then testdata/bench/run.py: the idle
## RSS of `dhtd run` with a full table, then dhtd, libtorrent (when
## installed) and a bare UDP echo server side by side on loopback, the
## same live table for both nodes, each server pinned to one core; prints
## the table of answers per CPU-second and the ratios. BENCHTIME and
## BENCH_ARGS (run.py flags, e.g. --quick) pass through.
BENCHTIME ?= 1s
BENCH_ARGS ?=
bench: build
	CGO_ENABLED=0 $(GO) build -o bin/dhtd-bench ./cmd/dhtd-bench
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...
	/usr/bin/python3 testdata/bench/run.py $(BENCH_ARGS)

## fuzz: run every fuzz target for FUZZTIME each.
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" as -fuzztime runs out while a worker is mid-call
# (fixed in Go 1.27). That failure writes no failing input: a run that
# fails that way, and only that way, is run once more; any other failure,
# and every run that writes a failing input, fails at once.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		for try in 1 2; do \
			echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
			if $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg >"$$log" 2>&1; then \
				cat "$$log"; break; \
			fi; \
			cat "$$log"; \
			if [ $$try = 1 ] && grep -q 'context deadline exceeded' "$$log" && \
				! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$$log"; then \
				echo "fuzz $$pkg $$name: the coordinator's deadline race, not a failing input; once more"; \
				continue; \
			fi; \
			exit 1; \
		done; \
	done

## man, completions: the manual page (docs/dhtd.1) and the bash, zsh and
## fish completion scripts, generated from the CLI definition by the
## binary itself (DHTD: a dhtd binary to use instead of building one).
DHTD        ?= $(BIN)
MANPAGE     ?= docs/dhtd.1
COMPLETIONS ?= bin/completions
GEN_DEPS    := $(if $(filter $(BIN),$(DHTD)),build)

man: $(GEN_DEPS)
	@mkdir -p $(dir $(MANPAGE))
	$(DHTD) man > $(MANPAGE)

completions: $(GEN_DEPS)
	@mkdir -p $(COMPLETIONS)
	$(DHTD) completion bash > $(COMPLETIONS)/dhtd.bash
	$(DHTD) completion zsh > $(COMPLETIONS)/_dhtd
	$(DHTD) completion fish > $(COMPLETIONS)/dhtd.fish

## install: the binary, the man page and the completions under
## $(DESTDIR)$(PREFIX).
PREFIX  ?= /usr/local
DESTDIR ?=
install: build man completions
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/dhtd
	install -Dm644 $(MANPAGE) $(DESTDIR)$(PREFIX)/share/man/man1/dhtd.1
	install -Dm644 $(COMPLETIONS)/dhtd.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/dhtd
	install -Dm644 $(COMPLETIONS)/_dhtd $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_dhtd
	install -Dm644 $(COMPLETIONS)/dhtd.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/dhtd.fish

clean:
	rm -rf bin $(MANPAGE)
