#!/usr/bin/env bash
# Build (or reuse) the package image the lab and the Molecule scenarios start from: hingecraft/debian13-systemd:latest
# with the Debian packages the collection's roles install already unpacked, so that the containers do not each
# download and unpack the same few hundred megabytes (measured under `make test`, an apt install of PostgreSQL in
# one scenario took up to 800 s while the others ran, and the lab's ten hosts took 41 min to come up). The postgresql
# Molecule scenario keeps the plain base image for its server: make test's proof that the roles install from a bare
# Debian 13 host.
#
# The image is a host on which an administrator installed the packages and nothing else: no service was started,
# none is enabled at boot, no PostgreSQL cluster exists. Each role still enables and starts what it owns, as on a
# host where it installs the packages itself; its install task then finds them present.
# No Dockerfile/registry: docker run + apt-get + docker commit. The tag is a hash of this recipe and of the base
# image id, so the image is rebuilt only when either changes. Prints the image name on stdout.
set -euo pipefail
log() { printf '[package-image] %s\n' "$*" >&2; }

BASE=${HC_BASE_IMAGE:-hingecraft/debian13-systemd:latest}
REPO=${HC_PACKAGE_IMAGE_REPO:-hingecraft/debian13-packages}
APT_CACHE=${HC_APT_CACHE:-/var/cache/hingecraft/apt-archives}/hc-build-packages
# What the roles in make test's scenarios install (roles/*/defaults and vars: postgresql with its extensions,
# pgbouncer, pgpool, pgbackrest, pki, exporters, monitoring, redis, redis_endpoint). A package left out is installed
# by its role, only slower.
PACKAGES="postgresql-17 postgresql-client-17 python3-psycopg postgresql-17-pgaudit postgresql-17-cron"
PACKAGES="$PACKAGES postgresql-17-timescaledb postgresql-17-pgvector postgresql-17-hypopg postgresql-17-partman"
PACKAGES="$PACKAGES postgresql-17-pg-qualstats pgbouncer pgpool2 pgbackrest python3-cryptography openssl"
PACKAGES="$PACKAGES prometheus-node-exporter prometheus-postgres-exporter prometheus promtool prometheus-alertmanager"
PACKAGES="$PACKAGES redis-server redis-sentinel redis-tools haproxy prometheus-redis-exporter"

# shellcheck source=scripts/derived-image.sh
. "$(dirname "$0")/derived-image.sh"
IMAGE=$(derived_image_name "$0")

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "package image $IMAGE is cached"
else
  builder="hc-build-packages-$$"
  log "building $IMAGE from $BASE (apt-get install of the roles' packages, a few minutes)"
  start_builder "$builder"
  docker exec -e DEBIAN_FRONTEND=noninteractive "$builder" bash -euo pipefail -c "
    # No service starts while the packages install, and no cluster is created (the postgresql role creates its
    # own, with data checksums).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/00-hc-package-image.conf
    find /etc/systemd/system -type l | sort > /tmp/links.before
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $PACKAGES >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; exit 1; }
    # Nothing the packages enabled stays enabled: each role enables what it runs.
    find /etc/systemd/system -type l | sort > /tmp/links.after
    comm -13 /tmp/links.before /tmp/links.after | xargs -r rm -f
    rm -f /usr/sbin/policy-rc.d /etc/postgresql-common/createcluster.d/00-hc-package-image.conf /tmp/links.*
    test -z \"\$(ls -A /etc/postgresql 2>/dev/null)\" || { echo 'a PostgreSQL cluster was created'; exit 1; }
  " >&2
  commit_builder "$builder" "$IMAGE"
fi
docker tag "$IMAGE" "$REPO:latest"
echo "$IMAGE"
