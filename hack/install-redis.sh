#!/usr/bin/env bash
# Makes redis-server (and redis-cli) runnable for the tests without installing anything system-wide:
# Debian's redis-server and redis-tools packages, plus those of their shared libraries this machine
# lacks, are fetched with `apt-get download` and unpacked with `dpkg -x` into a cache outside the
# repository. Prints the directory holding redis-server as the last line on stdout.
#
#   hack/install-redis.sh        unpack (or reuse) the packages, print the directory of redis-server
#
# What a caller may rely on:
# - The printed directory holds `redis-server` and `redis-cli`, runnable from anywhere: they are small
#   wrappers that put the unpacked libraries on LD_LIBRARY_PATH and exec the unpacked binaries.
# - Works as root and as any other user (`apt-get download` and `dpkg -x` need no privileges). The
#   version is the candidate of the machine's apt sources (Debian 12: 7.0.15). `apt-get update` runs
#   only when apt does not know redis-server, or cannot fetch the candidate its lists name, and only
#   as root; a non-root user is told to run it.
# - A second run only checks the cache (a stamp named after this script's SHA-256, and
#   `redis-server --version`) and prints the directory. Two runs at once do not write into each other.
# - AGENTKUBE_REDIS_BIN, when set and holding an executable redis-server, wins: nothing is fetched.
#   AGENTKUBE_REDIS_CACHE moves the cache (default ~/.cache/agentkube/redis).
# - Where there is no apt-get or dpkg (not Debian or Ubuntu), a redis-server on PATH is used if any.
# Progress goes to stderr, so `$(hack/install-redis.sh)` is the directory.
set -euo pipefail

PACKAGES=(redis-server redis-tools)

say() { echo "redis: $*" >&2; }
die() { echo "redis: error: $*" >&2; exit 1; }

if [[ -n "${AGENTKUBE_REDIS_BIN:-}" ]]; then
  [[ -x "$AGENTKUBE_REDIS_BIN/redis-server" ]] \
    || die "AGENTKUBE_REDIS_BIN=$AGENTKUBE_REDIS_BIN has no executable redis-server; unset it to unpack one here"
  echo "$AGENTKUBE_REDIS_BIN"; exit 0
fi

script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cache="${AGENTKUBE_REDIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentkube/redis}"
stamp="$cache/.installed-$(sha256sum "$script" | cut -c1-16)"
bin="$cache/bin"

installed() { [[ -f "$stamp" ]] && "$bin/redis-server" --version >/dev/null 2>&1; }

if installed; then echo "$bin"; exit 0; fi

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  found="$(command -v redis-server || true)"
  [[ -n "$found" ]] || die "no apt-get/dpkg here to fetch Debian's redis-server, and no redis-server on PATH; install Redis (7 or newer) and retry"
  say "no apt-get/dpkg; using $found from PATH"
  dirname "$found"; exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if installed; then echo "$bin"; exit 0; fi

updated=no
refresh_lists() {
  [[ "$updated" == no ]] || return 1
  [[ "$(id -u)" -eq 0 ]] || die "$1; run 'apt-get update' as root (or set AGENTKUBE_REDIS_BIN to a directory holding redis-server) and retry"
  say "$1; running apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed (see above)"
  updated=yes
}

# apt-cache takes about a second a call here (it rebuilds its cache), so it is asked few times.
candidate_of() { apt-cache policy redis-server 2>/dev/null | sed -n 's/^  Candidate: //p'; }
candidate="$(candidate_of)"
if [[ -z "$candidate" ]]; then
  refresh_lists "apt knows no package redis-server"
  candidate="$(candidate_of)"
  [[ -n "$candidate" ]] || die "apt knows no package redis-server even after apt-get update; check /etc/apt/sources.list (Debian main)"
fi
[[ "$candidate" != "(none)" ]] || die "apt has no installable candidate of redis-server"

installed_pkg() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]; }

# The packages plus every library package they depend on (transitively) that is not installed here,
# one apt-cache call per level. An alternative of an or-group may be fetched needlessly; the ldd
# check below is what decides.
wanted=("${PACKAGES[@]}")
level=("${PACKAGES[@]}")
while [[ ${#level[@]} -gt 0 ]]; do
  next=()
  while read -r dep; do
    [[ "$dep" == lib* ]] || continue
    [[ " ${wanted[*]} " == *" $dep "* ]] && continue
    installed_pkg "$dep" && continue
    wanted+=("$dep"); next+=("$dep")
  done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
             --no-enhances "${level[@]}" | sed -nE 's/^  \|?(Pre)?Depends: <?([^ >]+)>?$/\2/p')
  level=("${next[@]}")
done

staged="$(mktemp -d "$cache/.staged.XXXXXX")"
trap 'rm -rf "$staged"' EXIT
mkdir -p "$staged/debs" "$staged/root"
# As root, apt would hand the download to its unprivileged _apt user, who cannot write into a
# directory under root's home; the download is of public packages into our own cache either way.
apt_opts=()
[[ "$(id -u)" -ne 0 ]] || apt_opts=(-o APT::Sandbox::User=root)
download() { (cd "$staged/debs" && apt-get download -q "${apt_opts[@]}" "${wanted[@]}" >&2); }
say "fetching ${wanted[*]} (redis-server $candidate)"
if ! download; then
  refresh_lists "apt-get download failed (stale package lists?)" || die "apt-get download failed (see above)"
  download || die "apt-get download failed after apt-get update (see above)"
fi
for deb in "$staged"/debs/*.deb; do
  dpkg -x "$deb" "$staged/root"
done

server="$staged/root/usr/bin/redis-server"
[[ -e "$server" ]] || die "the redis-server package holds no usr/bin/redis-server; this script knows Debian's layout (12+)"
libdirs="$(find "$staged/root" -name '*.so*' -printf '%h\n' | sort -u | sed "s|^$staged/root|$cache/root|" | paste -sd:)"

# The final tree replaces any older one only now, under the lock; the wrappers name its final paths.
rm -rf "$cache/root" "$bin"
mv "$staged/root" "$cache/root"
mkdir -p "$bin"
for tool in redis-server redis-cli; do
  {
    echo '#!/usr/bin/env bash'
    echo "# Written by hack/install-redis.sh: Debian's $tool with the libraries unpacked beside it."
    printf 'export LD_LIBRARY_PATH=%q${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\n' "$libdirs"
    printf 'exec %q "$@"\n' "$cache/root/usr/bin/$tool"
  } >"$bin/$tool"
  chmod +x "$bin/$tool"
done

missing="$(LD_LIBRARY_PATH="$libdirs" ldd "$cache/root/usr/bin/redis-check-rdb" | awk '/not found/ {print $1}' | paste -sd' ')"
[[ -z "$missing" ]] || die "redis-server still lacks shared libraries: $missing (install the packages that hold them and retry)"
version="$("$bin/redis-server" --version)" || die "the unpacked redis-server does not run: $version"
rm -f "$cache"/.installed-*
echo "$candidate" >"$stamp"
say "ready in $((SECONDS))s: $version"
echo "$bin"
