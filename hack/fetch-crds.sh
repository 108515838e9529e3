#!/usr/bin/env bash
# Fetches third-party CRDs from their Go modules (through the Go module proxy) into
# ~/.cache/agentkube/crds/<module>@<version>/, where tests and `make run` install them from.
# Nothing fetched here is committed. Prints the directories it filled, one per line.
set -euo pipefail

# v1.6.1: what agentgateway v1.4.1 is built against.
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.1}"
AGENTGATEWAY_MODULE="${AGENTGATEWAY_MODULE:-github.com/agentgateway/agentgateway}"
AGENTGATEWAY_VERSION="${AGENTGATEWAY_VERSION:-latest}"

say() { echo "fetch-crds: $*" >&2; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/agentkube/crds"
mkdir -p "$cache"
source "$(dirname "${BASH_SOURCE[0]}")/go.sh"
GO="$(find_go)"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# module_dir MODULE VERSION -> the module's extracted files in the Go module cache
module_dir() { { (cd "$cache" && "$GO" mod download -json "$1@$2" 2>/dev/null) || true; } | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p'; }

fetch() {  # fetch NAME MODULE VERSION SUBDIR PATTERN
  local name=$1 module=$2 version=$3 subdir=$4 pattern=$5 dir dest
  dest="$cache/$name"
  if [[ -d "$dest" ]] && compgen -G "$dest/*.yaml" >/dev/null; then echo "$dest"; return 0; fi
  dir="$(module_dir "$module" "$version")"
  if [[ -z "$dir" || ! -d "$dir/$subdir" ]]; then
    say "warning: $module@$version is not served by the Go module proxy here; its CRDs are not installed"
    return 0
  fi
  mkdir -p "$dest.tmp"
  find "$dir/$subdir" -name "$pattern" -exec cp {} "$dest.tmp/" \;
  chmod -R u+w "$dest.tmp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  say "fetched $(ls "$dest" | wc -l) CRDs of $module@$version into $dest"
  echo "$dest"
}

fetch "gateway-api@$GATEWAY_API_VERSION" sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" config/crd/standard '*.yaml'
fetch "agentgateway@$AGENTGATEWAY_VERSION" "$AGENTGATEWAY_MODULE" "$AGENTGATEWAY_VERSION" . 'agentgateway.dev_*.yaml'
