#!/usr/bin/env bash
# Build the Debian 13 (trixie) systemd base image that the lab and Molecule use, without any image registry:
# debootstrap into a folder, then `docker import`. The image is tagged with a hash of its recipe (this file and
# the host's apt settings copied into it), so it is rebuilt only when the recipe changes.
set -euo pipefail
log() { printf '[image] %s\n' "$*" >&2; }

IMAGE_REPO=${HC_IMAGE_REPO:-hingecraft/debian13-systemd}
PACKAGES=python3,python3-apt,systemd,systemd-sysv,sudo,ca-certificates,iproute2,procps,gnupg

# The mirror comes from the host's own apt sources; the apt.conf.d settings that make it usable
# (snapshots past their Valid-Until date) are copied into the image.
mirror=${HC_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | awk '{ if ($1 == "deb") { for (i = 2; i <= NF; i++) if ($i ~ /^http/) { print $i; exit } } else { print $2; exit } }' || :)
fi
[ -n "$mirror" ] || { log "no Debian mirror found in the host's apt sources; set HC_DEBIAN_MIRROR"; exit 1; }
aptconf=$(cat /etc/apt/apt.conf.d/* 2>/dev/null | grep -E '^Acquire::Check-(Valid-Until|Date)' || :)

recipe_hash=$( { cat "$0"; echo "$PACKAGES"; echo "$aptconf"; } | sha256sum | cut -c1-12)
IMAGE="$IMAGE_REPO:$recipe_hash"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "base image $IMAGE is cached"
else
  command -v debootstrap >/dev/null 2>&1 || { log "installing debootstrap"; apt-get install -y -q debootstrap >/dev/null; }
  root=$(mktemp -d /var/tmp/hc-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap trixie from $mirror (about a minute)"
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$root" "$mirror" >/var/tmp/hc-debootstrap.log 2>&1 \
    || { tail -n 30 /var/tmp/hc-debootstrap.log >&2; exit 1; }
  printf '%s\n' "$aptconf" > "$root/etc/apt/apt.conf.d/99hingecraft-mirror"
  # Keep downloaded packages so a shared archive cache can serve later containers.
  echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > "$root/etc/apt/apt.conf.d/99hingecraft-keep"
  # dpkg without an fsync per file (as Debian's own container images do): a container's root is thrown away
  # with it, and 10-20 containers unpacking at once otherwise wait on the disk.
  echo 'force-unsafe-io' > "$root/etc/dpkg/dpkg.cfg.d/99hingecraft-unsafe-io"
  printf 'deb %s trixie main\n' "$mirror" > "$root/etc/apt/sources.list"
  # Units that make no sense in a container.
  for unit in systemd-firstboot.service systemd-udevd.service systemd-modules-load.service \
              getty@tty1.service console-getty.service systemd-remount-fs.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  echo 'LANG=C.UTF-8' > "$root/etc/default/locale"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  log "importing as $IMAGE"
  tar -C "$root" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' - "$IMAGE" >/dev/null
fi
docker tag "$IMAGE" "$IMAGE_REPO:latest"
echo "$IMAGE"
