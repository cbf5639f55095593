#!/usr/bin/env bash
# How often does a node killed with SIGKILL and started again on its old address fail to rejoin?
# Three nodes on loopback (a, b, c; each lists all three as seeds, a restart lists itself last, as the README
# advises); each round kills a and starts it again at the moment MODE names, then waits up to WAIT seconds
# for every node to list all three Up and reachable. Classic Akka.Remote can lose a race here (README,
# "A node restarted on its old address"); this counts it.
#
#   tests/bench/restart-race.sh [MODE] [ROUNDS]      MODE: now | unreachable (default) | down
#     now          start a again at once (a supervisor's first restart, Kubernetes' too)
#     unreachable  once b sees the killed run unreachable
#     down         once b sees it unreachable and has been told `cluster down a`
#   WAIT=60 (s per round), BUSY=1 (one busy loop beside the nodes), KEEP=1 (keep the data dirs and logs)
#
# Builds ActorCache (Release) first, as replication.sh does, unless DLL names another build. Prints one line per
# round and a summary; exits 1 if any round failed. The nodes' logs (and their
# debug logs, actorcache-debug.log) are in the printed directory when KEEP=1 or a round failed.
set -euo pipefail
MODE=${1:-unreachable}; ROUNDS=${2:-10}; WAIT=${WAIT:-60}
USAGE="usage: [WAIT=SECONDS] [BUSY=1] [KEEP=1] $0 [now|unreachable|down] [ROUNDS]"
case $MODE in now|unreachable|down) ;; *) echo "$USAGE" >&2; exit 2 ;; esac
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $WAIT =~ ^[1-9][0-9]*$ ]] || { echo "$USAGE (ROUNDS and WAIT are whole numbers above 0)" >&2; exit 2; }
export LC_ALL=C
cd "$(dirname "$0")/../.."
. tests/bench/cluster-common.sh
DLL=$(bench_dll)
DIR=$(mktemp -d /tmp/restart-race.XXXXXX)
declare -A CLUSTER=() PID=()
read -r CLUSTER[a] CLUSTER[b] CLUSTER[c] < <(free_ports 3)
BUSY_PID=
cleanup() {
  kill "${PID[@]}" ${BUSY_PID:+"$BUSY_PID"} 2>/dev/null || true
  sleep 1; kill -9 "${PID[@]}" ${BUSY_PID:+"$BUSY_PID"} 2>/dev/null || true  # a node that ignores SIGTERM
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ] || [ "${FAILS:-0}" -gt 0 ]; then echo "logs: $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

start() { # NAME SEED...
  local name=$1; shift
  local seeds=(); for s in "$@"; do seeds+=(--seed "127.0.0.1:${CLUSTER[$s]}"); done
  mkdir -p "$DIR/$name"
  dotnet "$DLL" serve --data-dir "$DIR/$name" --node-name "$name" --cluster "127.0.0.1:${CLUSTER[$name]}" "${seeds[@]}" \
    --listen "unix:$DIR/$name/nbd.sock" --admin 127.0.0.1:0 --volume "v$name:16M" \
    --set actorcache.cache.ring-size=64M --set akka.cluster.seed-node-timeout=3s >> "$DIR/$name.log" 2>&1 &
  PID[$name]=$!
}
# A node's admin URL, from the file it writes at each start (a killed run's stale one just fails to answer).
admin() { cat "$DIR/$1/admin.url" 2>/dev/null || echo "http://127.0.0.1:1"; }
members() { curl -s -m 3 "$(admin "$1")/api/cluster" || true; }
# Every node lists a, b and c, all Up and reachable.
all_up() {
  for n in a b c; do
    members "$n" | python3 -c 'import json, sys
try: up = sorted(x["node"] for x in json.load(sys.stdin) if x["status"] == "Up" and x["reachable"])
except Exception: sys.exit(1)  # no answer yet, or an error body
sys.exit(0 if up == ["a", "b", "c"] else 1)' || return 1
  done
}
wait_until() { # SECONDS COMMAND...
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.25; done
}
since() { awk -v t0="$1" -v t="$(date +%s.%N)" 'BEGIN { printf "%.1f", t - t0 }'; }  # seconds since $1, one decimal
b_sees_a_unreachable() { members b | grep -q '"node":"a"[^}]*"reachable":false'; }

[ "${BUSY:-0}" = 1 ] && { sh -c 'while :; do :; done' & BUSY_PID=$!; }
start a a b c; start b a b c; start c a b c
wait_until 120 all_up || { echo "the three nodes did not form a cluster within 120 s" >&2; FAILS=1; exit 1; }
FAILS=0
for round in $(seq 1 "$ROUNDS"); do
  kill -0 "${PID[a]}" 2>/dev/null || { echo "round $round: a had exited before it was killed"; FAILS=$((FAILS + 1)); break; }
  kill -9 "${PID[a]}"; wait "${PID[a]}" 2>/dev/null || true
  t0=$(date +%s.%N)
  if [ "$MODE" != now ] && ! wait_until 60 b_sees_a_unreachable; then
    echo "round $round: b did not see the killed run unreachable within 60 s"; FAILS=$((FAILS + 1)); break
  fi
  if [ "$MODE" = down ] && ! curl -sf -m 5 -X POST -H "Authorization: Bearer $(cat "$DIR/b/admin.token")" \
      -H 'Content-Type: application/json' -d '{"node":"a"}' "$(admin b)/api/cluster/down" > /dev/null; then
    echo "round $round: b refused or did not answer cluster down a"; FAILS=$((FAILS + 1)); break
  fi
  echo "round $round: restarted $(since "$t0") s after the kill" >> "$DIR/a.log"
  start a b c a
  if wait_until "$WAIT" all_up; then
    echo "round $round ($MODE): back, every node lists three Up, $(since "$t0") s after the kill"
  else
    FAILS=$((FAILS + 1))
    echo "round $round ($MODE): NOT back within $WAIT s; the members as each node lists them:"
    for n in a b c; do echo "  $n: $(members $n)"; done
    break
  fi
done
echo "mode $MODE: $FAILS failed of $round rounds"
[ "$FAILS" = 0 ]
