#!/usr/bin/env bash
# promtool and amtool for the controller (unit tests of the alert rules and Alertmanager routes), taken from the
# same Debian 13 packages the monitoring role installs (promtool, a dependency of prometheus; alertmanager), so the rules are tested by the version that runs them.
# The host may be an older Debian (its prometheus is 2.42), so the .debs are downloaded inside a throwaway
# container of the base image (scripts/base-image.sh) and extracted on the host into .cache/prom-tools/bin.
# Prints the bin directory. Reuses it when both tools are there.
set -euo pipefail
log() { printf '[prom-tools] %s\n' "$*" >&2; }
cd "$(dirname "$0")/.."
dest=${HC_PROM_TOOLS_DIR:-$PWD/.cache/prom-tools}
image=${HC_IMAGE:-hingecraft/debian13-systemd:latest}
if [ -x "$dest/bin/promtool" ] && [ -x "$dest/bin/amtool" ]; then
  echo "$dest/bin"; exit 0
fi
docker image inspect "$image" >/dev/null 2>&1 || { log "base image $image missing: run scripts/base-image.sh"; exit 1; }
mkdir -p "$dest/debs" "$dest/root" "$dest/bin"
name=monitoring-promtools-$$
trap 'docker rm -f "$name" >/dev/null 2>&1 || :' EXIT
log "downloading promtool and prometheus-alertmanager (Debian 13) in $name"
docker run -d --name "$name" "$image" sleep 600 >/dev/null
docker exec "$name" bash -ec 'apt-get update -q >/dev/null && mkdir -p /tmp/debs && cd /tmp/debs &&
  apt-get download -q promtool prometheus-alertmanager >/dev/null && ls'
docker cp "$name:/tmp/debs/." "$dest/debs/"
for deb in "$dest"/debs/*.deb; do dpkg-deb -x "$deb" "$dest/root"; done
cp "$dest/root/usr/bin/promtool" "$dest/root/usr/bin/amtool" "$dest/bin/"
log "$("$dest/bin/promtool" --version 2>&1 | head -n1)"
log "$("$dest/bin/amtool" --version 2>&1 | head -n1)"
echo "$dest/bin"
