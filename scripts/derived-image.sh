# shellcheck shell=bash
# Sourced by the scripts that derive an image from the base image (pg-test-image.sh, package-image.sh): no
# Dockerfile or registry, a builder container (docker run + apt-get), then docker commit. The caller sets BASE, REPO,
# APT_CACHE and a log function.

# derived_image_name SCRIPT: REPO:<hash of SCRIPT's text and of the base image id>, so an image is rebuilt only when
# its recipe or its base changes.
derived_image_name() {
  local base_id
  base_id=$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null) \
    || { log "base image $BASE missing: run 'make image' first"; return 1; }
  printf '%s:%s\n' "$REPO" "$( { cat "$1"; echo "$base_id"; } | sha256sum | cut -c1-12)"
}

# start_builder NAME: removes builders an interrupted run left behind (same name prefix), starts NAME from BASE with
# the shared apt archive cache mounted, and removes it when the calling script exits.
start_builder() {
  local old
  for old in $(docker ps -aq --filter "name=^${1%-*}-"); do docker rm -f "$old" >/dev/null; done
  mkdir -p "$APT_CACHE"
  # shellcheck disable=SC2064  # the name is fixed now, on purpose
  trap "docker rm -f '$1' >/dev/null 2>&1 || :" EXIT
  docker run -d --name "$1" -v "$APT_CACHE:/var/cache/apt/archives" "$BASE" sleep infinity >/dev/null
}

# commit_builder NAME IMAGE: commits the builder as IMAGE, systemd as its command.
commit_builder() {
  docker commit -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' "$1" "$2" >/dev/null
  log "built $2"
}
