#!/usr/bin/env bash
# Build the molecule target image localhost/bookworm-systemd from the Debian mirror apt already uses
# (no registry is reachable from the build machines). Cached: does nothing when the image exists.
# Usage: molecule/build-image.sh [--force]
set -euo pipefail

IMAGE=localhost/bookworm-systemd
SUITE=bookworm
PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,openssh-server,iproute2,sudo
FALLBACK_MIRROR=http://deb.debian.org/debian

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/molecule/containers.conf}"

force=false
case "${1:-}" in
  "") ;;
  --force) force=true ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

# Print one "deb URI SUITE COMPONENTS" line per bookworm suite of the host's apt sources
# (deb822 *.sources first, then one-line sources.list), so the image uses the same mirror.
host_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush(   i, j, n, m, s, u) {
        if (types ~ /(^| )deb( |$)/ && uris != "") {
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (s[j] ~ "^" suite "(-updates|-security)?$") print "deb " u[i] " " s[j] " " comps
        }
        types = uris = suites = comps = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "types:" { $1 = ""; types = substr($0, 2) }
      tolower($1) == "uris:" { $1 = ""; uris = substr($0, 2) }
      tolower($1) == "suites:" { $1 = ""; suites = substr($0, 2) }
      tolower($1) == "components:" { $1 = ""; comps = substr($0, 2) }
      END { flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # Drop "[option=value ...]" blocks, then keep deb lines for our suites.
    sed -E 's/\[[^]]*\]//' "$f" |
      awk -v suite="$SUITE" '$1 == "deb" && $3 ~ "^" suite "(-updates|-security)?$" { $1 = $1; print }'
  done
}

if ! $force && podman image exists "$IMAGE"; then
  echo "image: $IMAGE exists (use --force to rebuild)"
  exit 0
fi

old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
mapfile -t sources < <(host_sources | awk '!seen[$0]++')
if [ "${#sources[@]}" -eq 0 ]; then
  sources=("deb $FALLBACK_MIRROR $SUITE main")
fi

start=$(date +%s)
echo "image: building $IMAGE with mmdebstrap ($SUITE, minbase + $PACKAGES) from:"
printf '  %s\n' "${sources[@]}"
# An empty machine-id makes systemd generate one per container at boot; a baked-in id would be
# shared by every container started from the image. The package lists stay, as on a real host:
# apt's cache_valid_time judges them by the mtime of /var/lib/apt/lists, so an emptied but freshly
# touched directory makes Ansible's apt module skip the update and then find no package.
# shellcheck disable=SC2016 # mmdebstrap runs the hooks and passes the root directory as $1.
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" --skip=cleanup/apt/lists \
  --customize-hook='truncate -s 0 "$1/etc/machine-id"' \
  --customize-hook='rm -f "$1/var/lib/dbus/machine-id"' \
  "$SUITE" - "${sources[@]}" |
  podman import --quiet \
    --change 'CMD ["/sbin/init"]' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    - "$IMAGE" >/dev/null
# --force: drop the image the new one replaces, unless a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || echo "image: kept the previous image ${old_id:0:12} (a container uses it)"
fi
echo "image: built $IMAGE in $(( $(date +%s) - start ))s"
