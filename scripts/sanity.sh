#!/usr/bin/env bash
# ansible-test sanity on the collection. ansible-test wants the source under .../ansible_collections/NS/NAME,
# so the tracked and untracked-but-not-ignored files are copied into build/ and tested there, with the virtualenv's
# Python (no containers: there is no image registry here).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest="${HC_SANITY_DIR:-/tmp/hc-sanity-$(id -u)}/ansible_collections/hingecraft/enterprise_db"
rm -rf "$dest" && mkdir -p "$dest"
cd "$top"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest"
cd "$dest"
# ansible-test bootstraps pip in its sanity virtualenvs with a script from a host these machines cannot reach;
# give it the offline equivalent (scripts/get_pip_offline.py) for every pip version it may ask for.
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
grep -hoE "pip='[0-9.]+'" "$top"/.venv/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py \
  | grep -oE '[0-9][0-9.]*[0-9]' | while read -r v; do
  cp "$top/scripts/get_pip_offline.py" "$cache/get_pip_${v//./_}.py"
done
# Known exceptions are listed, each with its reason, in tests/sanity/ignore-<ansible-core version>.txt;
# SANITY_TESTS="test ..." runs only the tests named.
tests=()
if [ -n "${SANITY_TESTS:-}" ]; then for t in $SANITY_TESTS; do tests+=(--test "$t"); done; fi
exec "$top/.venv/bin/ansible-test" sanity --python "$(python3 -c 'import sys;print("%d.%d"%sys.version_info[:2])')" \
  --color no "${tests[@]}" "$@"
