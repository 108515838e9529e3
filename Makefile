# agentkube — kubebuilder-style targets. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMG ?= ghcr.io/agentkube/agentkube:$(shell sed -nE 's/^version = "(.*)"/\1/p' pyproject.toml)
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(BIN)/kubectl)
# The pytest tiers `make test` runs; narrow with e.g. `make test PYTEST_ARGS=test/unit`.
PYTEST_ARGS ?= test
# agentgateway's own CRDs (the Go module proxy does not serve them), installed by `make test` and
# `make run`: the shared test data beside the checkout when it is there; set it to use others.
AGENTKUBE_AGENTGATEWAY_CRDS ?= $(abspath $(wildcard ../shared/third_party/agentgateway-crds-v1.4.1))
export AGENTKUBE_AGENTGATEWAY_CRDS

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/agentkube: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: Python 3.11+ is needed ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: venv
venv: $(BIN)/agentkube ## Create .venv and install agentkube with its test tools.

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver and etcd from Go modules; prints their directory.
	@hack/build-envtest.sh

.PHONY: lint
lint: venv ## ruff (lint + format check) and mypy --strict on agentkube/runtime, agentkube/testing and agentkube/dataplane.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy agentkube/runtime agentkube/testing agentkube/dataplane

.PHONY: test
test: venv lint crds e2e-peers ## Lint, type-check, then every pytest tier against a real kube-apiserver + etcd.
	@if [ -n "$(AGENTKUBE_AGENTGATEWAY_CRDS)" ]; then echo "make test: agentgateway's CRDs from $(AGENTKUBE_AGENTGATEWAY_CRDS)"; \
	else echo "make test: agentgateway's own CRDs not found (set AGENTKUBE_AGENTGATEWAY_CRDS to a directory of them); ToolGateway tests use the project's stand-ins"; fi
	KUBEBUILDER_ASSETS="$$(hack/build-envtest.sh)" AGENTKUBE_E2E_PEERS="$$(hack/install-e2e-peers.sh)" \
		AGENTKUBE_REDIS_BIN="$$(hack/install-redis.sh || true)" $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: e2e-peers
e2e-peers: ## Install the real MCP peers of the e2e tier (Node.js 22, MCP servers, SDKs, conformance suite).
	@hack/install-e2e-peers.sh >/dev/null

.PHONY: redis
redis: ## Unpack Debian's redis-server for the shared-store tests (cached); prints its directory.
	@hack/install-redis.sh

.PHONY: crds
crds: ## Fetch third-party CRDs (Gateway API, agentgateway) from their Go modules into the cache.
	@hack/fetch-crds.sh >/dev/null

.PHONY: run
run: venv crds ## Run the operator: current kubeconfig, or a local control plane when none answers.
	$(BIN)/agentkube manager --local-control-plane=auto --health-probe-bind-address=127.0.0.1:8081 \
		--metrics-bind-address=127.0.0.1:8080

.PHONY: manifests
manifests: venv ## Generate the CRDs into config/crd/bases from the API models.
	$(BIN)/agentkube crds --output-dir config/crd/bases

.PHONY: install
install: manifests ## Install the CRDs into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs (and so every object of our kinds) from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator to the current cluster (config/default).
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k config/default

.PHONY: docker-build
docker-build: ## Build the operator image (IMG=agentkube:dev).
	docker build -t $(IMG) .

.PHONY: bench
bench: venv ## Run every benchmark; each prints its figures.
	KUBEBUILDER_ASSETS="$$(hack/build-envtest.sh)" sh -c 'for b in bench/[a-z]*.py; do \
		case $$b in *_upstream.py) continue;; esac; \
		$(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done'

.PHONY: clean
clean: ## Remove the venv and caches (the control-plane binaries stay in ~/.cache/agentkube).
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
