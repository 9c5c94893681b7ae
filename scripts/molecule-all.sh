#!/usr/bin/env bash
# Run Molecule scenarios, at most JOBS at once (each: destroy, create, prepare, converge, idempotence, verify,
# destroy). Scenarios use their own containers, networks and apt caches, so they can run side by side; most of a
# scenario's time is spent waiting (systemd, services, retries), so two at once on 2 cores saves wall time.
# Each scenario logs to .cache/molecule/<scenario>.log; a failed one has its log's tail printed. Exit 1 if any fail.
# Scenarios named in MOLECULE_LAB_IDEMPOTENT run without Molecule's idempotence step (destroy, create, prepare,
# converge, verify, destroy): make test names those whose roles the platform suite's last site.yml proves
# idempotent on the lab, changed=0 on every host after the failovers, so the second converge here would repeat it.
#   [MOLECULE_LAB_IDEMPOTENT="ha backup"] scripts/molecule-all.sh JOBS SCENARIO...
set -uo pipefail
jobs=${1:?usage: molecule-all.sh JOBS SCENARIO...}; shift
logdir=.cache/molecule
mkdir -p "$logdir"
declare -A pids=() started=()
failed=()
lab_idempotent=" ${MOLECULE_LAB_IDEMPOTENT:-} "

scenario() {  # $1 = scenario: the whole test sequence, or without idempotence when the lab proves it
  local s=$1 rc=0
  if [[ "$lab_idempotent" != *" $s "* ]]; then
    molecule test -s "$s"; return
  fi
  echo "[molecule] $s: no idempotence step here, the platform suite's second site.yml checks these roles (changed=0)"
  molecule destroy -s "$s" && molecule create -s "$s" && molecule prepare -s "$s" && molecule converge -s "$s" &&
    molecule verify -s "$s" || rc=$?
  molecule destroy -s "$s" || [ "$rc" -ne 0 ] || rc=1
  return "$rc"
}

finish() {  # $1 = scenario whose process ended with status $2
  local s=$1 rc=$2
  if [ "$rc" -eq 0 ]; then
    echo "[molecule] scenario $s passed in $(( $(date +%s) - started[$s] )) s ($(grep -Eo '[0-9]+ passed[^=]*' "$logdir/$s.log" | tail -n 1))"
  else
    echo "[molecule] scenario $s FAILED (rc $rc) after $(( $(date +%s) - started[$s] )) s; last lines of $logdir/$s.log:"
    tail -n 60 "$logdir/$s.log"
    failed+=("$s")
  fi
}

reap() {  # wait for any one scenario to end
  local pid s rc
  wait -n -p pid "${pids[@]}"; rc=$?
  for s in "${!pids[@]}"; do
    if [ "${pids[$s]}" = "$pid" ]; then unset "pids[$s]"; finish "$s" "$rc"; return; fi
  done
}

for s in "$@"; do
  while [ "${#pids[@]}" -ge "$jobs" ]; do reap; done
  note=""; [[ "$lab_idempotent" != *" $s "* ]] || note=", idempotence left to the lab's second site.yml"
  echo "[molecule] scenario $s started ($(date +%T))$note, log $logdir/$s.log"
  started[$s]=$(date +%s)
  scenario "$s" >"$logdir/$s.log" 2>&1 &
  pids[$s]=$!
done
while [ "${#pids[@]}" -gt 0 ]; do reap; done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "[molecule] failed: ${failed[*]}"
  exit 1
fi
echo "[molecule] all passed: $*"
