#!/usr/bin/env bash
# Build (or reuse) the PostgreSQL 17 test image that the module integration tests run against:
# hingecraft/debian13-systemd:latest + PostgreSQL 17 + the extensions the modules use + python3-psycopg
# (the modules run on the target); pg_stat_statements, pg_qualstats and timescaledb are preloaded for
# pg_index_advisor and pg_hypertable. No Dockerfile/registry: docker run + apt-get + docker commit.
# The tag is a hash of this recipe and of the base image id, so the image is rebuilt only when either changes.
# Prints the image name on stdout.
set -euo pipefail
log() { printf '[pg-test-image] %s\n' "$*" >&2; }

BASE=${HC_BASE_IMAGE:-hingecraft/debian13-systemd:latest}
REPO=${HC_PG_TEST_IMAGE_REPO:-hingecraft/pg17-test}
APT_CACHE=${HC_APT_CACHE:-/var/cache/hingecraft/apt-archives}
PACKAGES="postgresql-17 postgresql-17-pgvector postgresql-17-partman postgresql-17-cron postgresql-17-hypopg"
PACKAGES="$PACKAGES postgresql-17-pgaudit postgresql-17-timescaledb postgresql-17-pg-qualstats python3-psycopg locales-all"
# Test database: pg_cron runs its jobs from cron.database_name, so the modules' tests use that database.
TEST_DB=hc_it

# shellcheck source=scripts/derived-image.sh
. "$(dirname "$0")/derived-image.sh"
IMAGE=$(derived_image_name "$0")

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "test image $IMAGE is cached"
else
  builder="hc-build-pg17-test-$$"
  log "building $IMAGE from $BASE (apt-get install, about a minute)"
  start_builder "$builder"
  docker exec -e DEBIAN_FRONTEND=noninteractive "$builder" bash -euo pipefail -c "
    apt-get update -q >/dev/null
    # The archive cache is shared with other containers: wait (bounded) while another apt holds its lock.
    for try in \$(seq 1 30); do
      if apt-get install -y -q --no-install-recommends $PACKAGES >/tmp/apt.log 2>&1; then break; fi
      if [ \$try -lt 30 ] && grep -q 'Could not get lock' /tmp/apt.log; then sleep 5; continue; fi
      tail -n 30 /tmp/apt.log; exit 1
    done
    cat > /etc/postgresql/17/main/conf.d/10-hc-it.conf <<'EOF'
# hingecraft integration-test settings (scripts/pg-test-image.sh)
shared_preload_libraries = 'pg_stat_statements, pg_qualstats, pg_cron, timescaledb'
cron.database_name = '$TEST_DB'
timescaledb.telemetry_level = off
pg_qualstats.sample_rate = 1
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    pg_ctlcluster 17 main start
    su postgres -c 'createdb $TEST_DB'
    pg_ctlcluster 17 main stop
    rm -rf /var/lib/apt/lists/*
  " >&2
  commit_builder "$builder" "$IMAGE"
fi
docker tag "$IMAGE" "$REPO:latest"
echo "$IMAGE"
