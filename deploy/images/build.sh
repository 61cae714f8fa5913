#!/usr/bin/env bash
# Builds the images every Flotilla node imports when its agent starts (k3s' airgap images), with
# no registry and no network:
#   pause.tar    flotilla.local/pause:1    the pod sandbox (pause.c, linked statically)
#   busybox.tar  flotilla.local/busybox:1  a shell and the usual tools (busybox-static), for tests
# An archive is rebuilt only when one of its sources is newer than it; otherwise this prints
# nothing. Builds are reproducible: the same sources give the same image digests.
#
# Usage: deploy/images/build.sh [OUT_DIR]   (default: $FLOTILLA_IMAGES_DIR or /var/lib/flotilla/images)
# Needs: python3, gcc with a static libc (build-essential), busybox-static.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${FLOTILLA_IMAGES_DIR:-/var/lib/flotilla/images}}"
busybox="$(command -v busybox || echo /bin/busybox)"

fail() { echo "images/build.sh: $*" >&2; exit 1; }

# Whether $1 is missing or older than any of the other arguments.
stale() {
  local target="$1" source
  shift
  [[ -f "$target" ]] || return 0
  for source in "$@"; do
    [[ "$source" -nt "$target" ]] && return 0
  done
  return 1
}

# A rootfs holding only the static pause binary.
stage_pause() {
  local rootfs="$1"
  mkdir -p "$rootfs"
  gcc -static -Os -s -o "$rootfs/pause" "$here/pause.c" ||
    fail "gcc -static failed: install build-essential (it brings the static libc)"
}

# A busybox rootfs: every applet a symlink to /bin/busybox, root and nobody users, a page for
# `httpd -h /var/www`.
stage_busybox() {
  local rootfs="$1" applet
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var/www,home}
  chmod 1777 "$rootfs/tmp"
  cp "$busybox" "$rootfs/bin/busybox"
  # `busybox --list-full` prints each applet with its directory: bin/ls, sbin/ifconfig, ...
  while read -r applet; do
    [[ "$applet" == bin/busybox ]] || ln -sf /bin/busybox "$rootfs/$applet"
  done < <("$busybox" --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
  echo '<html><body>flotilla busybox</body></html>' >"$rootfs/var/www/index.html"
}

command -v python3 >/dev/null || fail "python3 is missing: run deploy/install.sh"
[[ -x "$busybox" ]] || fail "busybox is missing: install busybox-static"
# A dynamically linked busybox would find no libc inside the image.
if ldd "$busybox" >/dev/null 2>&1; then
  fail "$busybox is dynamically linked: install busybox-static"
fi

common=("$here/build.sh" "$here/build_oci.py")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

if stale "$out/pause.tar" "${common[@]}" "$here/pause.c"; then
  stage_pause "$work/pause"
  # 65535: the unprivileged user Kubernetes' own pause image runs as.
  python3 "$here/build_oci.py" --rootfs "$work/pause" --name flotilla.local/pause:1 \
    --out "$out/pause.tar" --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
fi

if stale "$out/busybox.tar" "${common[@]}" "$busybox"; then
  stage_busybox "$work/busybox"
  python3 "$here/build_oci.py" --rootfs "$work/busybox" --name flotilla.local/busybox:1 \
    --out "$out/busybox.tar" --cmd '["sh"]' --workdir / >/dev/null
fi
