# oauth2gate: `make run` builds Caddy with this module and runs Caddyfile.example;
# `make test` runs every test. See README.md.

GO      ?= go
CADDY   ?= ./caddy
FUZZTIME ?= 30s

.PHONY: build build-go run test test-deps bench fuzz clean

# build: xcaddy from the manifest xcaddy.json, with this checkout as the local
# replacement; if xcaddy cannot run, a plain `go build ./cmd/caddy`.
build:
	@args="$$($(GO) run ./cmd/xcaddyargs -f xcaddy.json -o $(CADDY))" && \
	echo "xcaddy $$args" && \
	( $(GO) tool xcaddy $$args || { echo "xcaddy failed; falling back to go build ./cmd/caddy"; $(GO) build -o $(CADDY) ./cmd/caddy; } )

build-go:
	$(GO) build -o $(CADDY) ./cmd/caddy

run: build
	$(CADDY) run --config Caddyfile.example --adapter caddyfile

# test-deps installs what the tests need and the machine may lack.
test-deps:
	@bash tests/install-deps.sh

test: test-deps
	@$(GO) mod tidy -diff >/dev/null || { echo "go mod tidy would change go.mod or go.sum (go mod tidy -diff shows how): run go mod tidy and commit"; exit 1; }
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above: run gofmt -w"; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench:
	bash tests/bench/run.sh
	bash tests/bench/guard.sh
	bash tests/bench/redis.sh
	bash tests/bench/trust.sh
	cd authz && $(GO) test -run xxx -bench GuardHotPath -benchmem -count 5 ./
	cd caddymodule && $(GO) test -run xxx -bench GuardHandler -benchmem -count 5 ./

# fuzz runs every fuzz target for FUZZTIME each (the normal test run replays
# their seeds and testdata/fuzz corpora).
FUZZ_TARGETS = authz:FuzzTokenRequest authz:FuzzAuthorizeRequest authz/gateway:FuzzBearerExtraction authz/params:FuzzExtractStripRedact \
	authz:FuzzJWTParse authz:FuzzScopeParse caddymodule:FuzzCaddyfile authz/cors:FuzzCheckOrigin
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test ./$$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS); \
	done

clean:
	rm -f $(CADDY)
