# hingecraft.enterprise_db — the two commands a newcomer needs: `make lab` and `make test`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
COLL_ROOT   := .collections/ansible_collections/hingecraft
COLL_LINK   := $(COLL_ROOT)/enterprise_db
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PY_COLORS := 0
export ANSIBLE_FORCE_COLOR := 0

# Molecule scenarios that `make molecule` runs (each: create, converge, idempotence, verify, destroy), longest first,
# MOLECULE_JOBS side by side (each scenario has its own containers, network and apt cache).
MOLECULE_SCENARIOS ?= ha backup monitoring redis postgresql security schema pki
MOLECULE_JOBS ?= 3
# Scenarios run without their idempotence step (scripts/molecule-all.sh): none by default.
MOLECULE_LAB_IDEMPOTENT ?=
# What `make test` runs of them. ha and redis stay with `make molecule`: their clusters are the lab's (pg1-3 behind
# proxy1, redis1-3), their verify checks run on the lab in the platform suite (tests/platform/test_ha_paths.py,
# test_redis.py), and their failovers are the fault matrix's. backup and monitoring skip their idempotence step:
# the platform suite's last site.yml, on the lab after every failover, proves their roles idempotent (changed=0 on
# every host). Measured on 2 cores, both together were about a quarter of make test.
TEST_MOLECULE_SCENARIOS := backup monitoring postgresql security schema pki
LAB_IDEMPOTENT_SCENARIOS := backup monitoring

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements.txt requirements-test.txt
	@echo "[venv] creating $(VENV) with pinned packages"
	test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

$(COLL_LINK):
	mkdir -p $(COLL_ROOT)
	ln -sfn ../../.. $(COLL_LINK)

.PHONY: venv
venv: $(VENV)/.stamp $(COLL_LINK) ## Virtualenv with the pinned packages, collection linked in place

.PHONY: tools
tools: ## Host packages: debootstrap, docker.io, shellcheck (installed only when missing)
	scripts/host-tools.sh

.PHONY: engine
engine: tools ## Make sure a Docker engine answers (starts dockerd in the background if needed)
	scripts/docker-engine.sh

.PHONY: image
image: engine ## Build (or reuse) the Debian 13 systemd base image
	scripts/base-image.sh >/dev/null

.PHONY: package-image
package-image: image ## Build (or reuse) the image the lab and the Molecule scenarios start from: the base image with the roles' Debian packages unpacked, nothing enabled
	scripts/package-image.sh >/dev/null

.PHONY: lab
lab: venv package-image ## Bring up the lab: containers (from the package image) on a private network, then playbooks/site.yml
	$(BIN)/ansible-playbook playbooks/lab.yml
	$(BIN)/ansible-playbook playbooks/site.yml
	$(PY) scripts/lab_smoke.py

.PHONY: lab-destroy
lab-destroy: venv engine ## Remove the lab containers and network
	$(BIN)/ansible-playbook playbooks/lab.yml -e lab_state=absent

.PHONY: lint
lint: venv tools ## ansible-lint (production), yamllint, ruff, ansible-test sanity
	$(BIN)/yamllint -s .
	$(BIN)/ruff check plugins tests scripts molecule roles examples
	$(BIN)/antsibull-changelog lint
	$(PY) scripts/role_docs.py --check
	$(BIN)/ansible-lint --profile production
	scripts/sanity.sh

.PHONY: unit
unit: venv tools image ## Unit tests, incl. promtool/amtool tests of every alert rule and route (tools from Debian 13's packages, cached) and decK's offline check of the generated kong.yml
	scripts/prom-tools.sh >/dev/null
	HC_REQUIRE_PROMTOOL=1 HC_REQUIRE_DECK=1 $(BIN)/pytest -q tests/unit

.PHONY: collection
collection: venv ## The collection as users get it: galaxy build, offline install with its dependencies into .cache/collection, --syntax-check of every playbook from the installed copy
	$(PY) scripts/collection.py

.PHONY: ee
ee: collection ## Execution environment build context (ansible-builder create, offline) in .cache/ee/context; introspect agrees with the requirements files
	$(PY) scripts/ee.py

.PHONY: integration
integration: venv image ## Modules against a real PostgreSQL 17 container
	$(BIN)/pytest -q tests/integration

.PHONY: molecule
molecule: venv package-image ## Every Molecule scenario in MOLECULE_SCENARIOS, MOLECULE_JOBS at a time (logs in .cache/molecule)
	MOLECULE_LAB_IDEMPOTENT="$(MOLECULE_LAB_IDEMPOTENT)" scripts/molecule-all.sh $(MOLECULE_JOBS) $(MOLECULE_SCENARIOS)

.PHONY: bench-ha
bench-ha: venv package-image ## HA benchmark: failover RTO/RPO, 5,000 pooled connections, pgbench -> docs/bench/ha.{json,png}
	$(BIN)/pip install -q -r requirements-bench.txt
	$(BIN)/molecule destroy -s ha
	$(BIN)/molecule create -s ha
	$(BIN)/molecule prepare -s ha
	$(BIN)/molecule converge -s ha
	eph=$$(ls -dt $$HOME/.ansible/tmp/molecule.*.ha | head -n 1)
	status=0
	$(PY) tests/bench/ha_bench.py --secrets $$eph/secrets --inventory $$eph/inventory/ansible_inventory.yml || status=$$?
	$(BIN)/molecule destroy -s ha
	exit $$status

.PHONY: e2e
e2e: venv ## Against a running lab (make lab): TLS audit of every listener listed in the lab inventory
	$(BIN)/pytest -q tests/e2e

.PHONY: platform
platform: lab collection ## Platform acceptance suite: make lab, then writes, the fault matrix, runbooks, a second site.yml -> docs/bench/platform.json; then the TLS audit of every lab listener (make e2e)
	$(MAKE) --no-print-directory platform-tests

.PHONY: platform-tests
platform-tests: venv ## What `make platform` runs once the lab is up: tests/platform, then tests/e2e (needs make lab and make collection)
	$(BIN)/pytest -q -p no:cacheprovider tests/platform
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e

.PHONY: platform-full
platform-full: venv ## platform-tests plus what make test leaves out for time: the AWX site (check) template's full check-mode run of site.yml
	HC_PLATFORM_FULL=1 $(MAKE) --no-print-directory platform-tests

.PHONY: bench-platform
bench-platform: venv ## Against a running lab (make lab): the fault matrix with HC_PLATFORM_TRIALS (5) trials of each primary fault -> docs/bench/platform.json
	HC_PLATFORM_TRIALS=$${HC_PLATFORM_TRIALS:-5} $(BIN)/pytest -q -p no:cacheprovider tests/platform -k "pooler or one_primary or fault"

.PHONY: test
test: venv package-image ## Everything CI runs: make lab in the background from the start; the checks above, then Molecule; then the platform suite
	# Measured on 2 cores: the static checks, unit and integration tests leave about half the machine idle, and a
	# lab bring-up beside three Molecule scenarios took 32-41 min (about 14 min alone). So the lab starts first and
	# comes up while the checks run; Molecule follows; the platform suite (the fault matrix) starts only when the
	# lab and Molecule are both done, on a quiet machine.
	mkdir -p .cache
	echo "[test] make lab in the background while the checks and Molecule run (log .cache/lab.log)"
	started=$$(date +%s)
	$(MAKE) --no-print-directory lab >.cache/lab.log 2>&1 & lab=$$!
	chk=0; $(MAKE) --no-print-directory lint unit collection ee integration || chk=$$?
	if [ $$chk -ne 0 ]; then
	  echo "[test] the checks failed (rc $$chk); waiting for the lab bring-up to end before exiting"; wait $$lab; exit 1
	fi
	echo "[test] checks passed $$(( $$(date +%s) - started )) s after the start"
	mol=0; $(MAKE) --no-print-directory molecule MOLECULE_SCENARIOS="$(TEST_MOLECULE_SCENARIOS)" \
	  MOLECULE_LAB_IDEMPOTENT="$(LAB_IDEMPOTENT_SCENARIOS)" || mol=$$?
	labrc=0; wait $$lab || labrc=$$?
	if [ $$labrc -ne 0 ]; then
	  echo "[test] make lab FAILED (rc $$labrc); last lines of .cache/lab.log:"; tail -n 80 .cache/lab.log; exit 1
	fi
	echo "[test] lab up; checks, Molecule and lab done $$(( $$(date +%s) - started )) s after the start"
	sed -n -e '/PLAY RECAP/,/^$$/p' -e '/^\[lab\]/p' .cache/lab.log
	plat=0; $(MAKE) --no-print-directory platform-tests || plat=$$?
	[ $$mol -eq 0 ] || { echo "[test] Molecule failed (see above)"; exit 1; }
	exit $$plat

.PHONY: bench-redis
bench-redis: venv ## Against a running lab (make lab): GET p99 at 1,000 ops/s over TLS, a member read from the cache vs the database, HC_REDIS_TRIALS (5) SIGKILL and partition trials of the cache master -> docs/bench/redis.{json,svg}
	$(PY) tests/bench/redis_bench.py

.PHONY: bench-backup
bench-backup: venv image ## Backup benchmark: backup/restore throughput, restore-to-ready, WAL archive lag -> docs/bench/backup.{json,svg}
	$(BIN)/molecule destroy -s backup
	trap '$(BIN)/molecule destroy -s backup' EXIT
	$(BIN)/molecule create -s backup
	$(BIN)/molecule prepare -s backup
	$(BIN)/molecule converge -s backup
	$(PY) tests/bench/backup_bench.py

.PHONY: clean
clean: ## Remove the virtualenv and local caches (not the lab)
	rm -rf $(VENV) .collections .cache .pytest_cache tests/output

.PHONY: bench-schema
bench-schema: venv image ## Schema benchmark: 1M+ rows per collection, p50/p95/p99, refresh, EXPLAIN -> docs/bench/schema.{json,svg}
	$(PY) tests/bench/schema_bench.py $(BENCH_SCHEMA_ARGS)
