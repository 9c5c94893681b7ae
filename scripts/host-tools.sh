#!/usr/bin/env bash
# Host packages the Makefile needs beyond Python: debootstrap (base image), docker.io (engine, see
# docker-engine.sh), shellcheck (ansible-test sanity lints shell scripts with it), deck (make unit validates the
# gateway's generated kong.yml offline with it). Installs only what is missing.
set -euo pipefail
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v deck >/dev/null 2>&1 || need+=(deck)
if [ ${#need[@]} -gt 0 ]; then
  printf '[host] installing %s\n' "${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${need[@]}" >/dev/null
fi
