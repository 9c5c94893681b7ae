#!/usr/bin/env bash
# Make sure a Docker engine answers. On these hosts there is no systemd as PID 1 and no engine running:
# install Debian's docker.io when dockerd is missing, then start dockerd in the background and wait for it.
set -euo pipefail
log() { printf '[engine] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  log "Docker engine already answers"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io from Debian (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q docker.io >/dev/null
fi
if [ -S /var/run/docker.sock ] && ! pgrep -x dockerd >/dev/null; then
  rm -f /var/run/docker.sock /var/run/docker.pid
fi
if ! pgrep -x dockerd >/dev/null; then
  log "starting dockerd in the background (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/dockerd.log"
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
