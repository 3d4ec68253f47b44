# The two commands a new user needs: `make run` and `make test`.

GO       ?= go
PKGS     ?= ./...
# Go's race detector needs cgo.
export CGO_ENABLED ?= 1

.PHONY: run test build vet fmt bench docker chaos api-clients

## run: build and start the service (API on :8000, docs at /docs); uses the
## local PostgreSQL, or starts a private one under ./data when none runs.
run:
	./scripts/run.sh

## test: vet, then every test with the race detector against the local
## PostgreSQL (TENANCY_TEST_DATABASE_URL overrides the server).
test: vet
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

## chaos: the fault harness's full run (chaos/): 3 replicas on a Postgres
## primary with a streaming standby, a 3-node NATS cluster, faults under a
## steady load, then the checks; under 15 minutes, exits non-zero on any
## broken promise. A short smoke run of it is part of make test.
## CHAOS_DIR=dir keeps the processes' data and logs.
chaos:
	CHAOS=full $(GO) test -count=1 -v -timeout 16m -run '^TestChaos$$' ./chaos/

## api-clients: the OpenAPI document through the tools client teams use
## (openapi-typescript + tsc --strict, Redocly, Spectral); needs node and npm.
api-clients:
	./scripts/check-api-clients.sh

## build: the tenancy binary into bin/.
build:
	$(GO) build -o bin/tenancy ./cmd/tenancy

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## docker: the service's image.
docker:
	docker build -t tenancy .

## bench: every benchmark once, with the figures the issues ask for.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)
