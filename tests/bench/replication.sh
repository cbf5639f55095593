#!/usr/bin/env bash
# Replication measured on this machine (issue 13's targets): three nodes a, b, c on loopback, a volume rc
# replicated on all three (primary a) against a volume plain of the same size on a alone, same run:
#   J1, J2, J3 (compare.sh's fio jobs) on rc under protocol C and on plain, alternating: rc/plain ratios
#   J1 again under protocol A and under B (switched live with `volume protocol`)
#   ack latency p50/p99 per peer as `peer status` reports it after each protocol's runs
#   R1 resync: c stops (`cluster leave c`), 1 GiB is written to rc, c restarts with its data dir; time
#      from c's reconnection until it is UpToDate with nothing out of sync (no resync rate limit)
#   R2 catch-up: J1 on rc, c SIGSTOPped for 10 s, SIGCONT; time until c is UpToDate again, J1 still running
#   R3 failover: J1 on rc, a SIGKILLed, b promoted (or the node it names as holding newer data), a restarted;
#      what the new primary resyncs to a and c (narrowed by the logs, not the whole volume) and how long it takes
#   beside each run: every node's CPU and the shared disk's flushes and MiB written per second (/proc/diskstats)
# Ratios are medians of REPS alternating runs; the machine is shared (2 cores here, the three nodes and fio
# on them), so read ratios, not times. Not part of CI.
# Usage: tests/bench/replication.sh        (REPS=3 RUNTIME=10 JOBS="J1 J2 J3" PROTOCOLS="A B" RESYNCS="R1 R2 R3" to change;
#        KEEP=1 keeps the work directory with the node logs (the volumes and cache logs too: about 9.4 GB a run; remove it); AC_ARGS="--set k=v ..." goes to every node;
#        DLL=path/ActorCache.dll runs that build instead of building this tree;
#        WARMUP=SECONDS (10) of J1 and J2 on each volume before the measured runs, 0 for none;
#        PERF=SECONDS profiles the whole machine (perf record -a -g) for that long in the first rc run of each job
#        under C (starting 3 s in; keep PERF <= RUNTIME - 3) and in R1 from c's restart, with the JIT's frames named,
#        and prints where each node's CPU went; those runs are measured with the profiler on)
# Needs: fio (nbd engine), curl, python3 (Debian's), dotnet; perf (Debian's linux-perf) for PERF=.
set -Eeuo pipefail
trap 'echo "replication.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1G}
JOBS=${JOBS:-"J1 J2 J3"}
PROTOCOLS=${PROTOCOLS:-"A B"}
OUTAGE=${OUTAGE:-10}                 # R2: seconds c is stopped
RESYNCS=${RESYNCS:-"R1 R2 R3"}       # which of the resync measurements run
WARMUP=${WARMUP:-10}                 # seconds of J1 and J2 on each volume before the measured runs
RESYNC_TIMEOUT=${RESYNC_TIMEOUT:-300} # give up waiting for UpToDate after this many seconds
work=$(mktemp -d /tmp/actorcache-replbench.XXXXXX)
results=$work/results.tsv   # job  volume  protocol  rep  iops  MiB/s  p50  p99  peer-drops
facts=$work/facts.tsv       # key  value  (ack latencies, resync and catch-up timings)
: >"$results"; : >"$facts"; : >"$work/cpu.tsv"
declare -A PID=() PORT=()
sampler=; load=; profiler=
if [ -n "${PERF:-}" ]; then
  command -v perf >/dev/null || { echo "PERF= needs perf (apt-get install linux-perf)" >&2; exit 2; }
  # The nodes write /tmp/perf-PID.map for perf to name JIT-compiled frames; with W^X on, the code runs from a
  # double-mapped file perf cannot match to those maps.
  export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
fi
cleanup() {
  for p in $sampler $load $profiler; do kill "$p" 2>/dev/null || true; done
  for n in "${!PID[@]}"; do kill -CONT "${PID[$n]}" 2>/dev/null || true; kill -TERM "${PID[$n]}" 2>/dev/null || true; done
  for n in "${!PID[@]}"; do
    for _ in $(seq 150); do kill -0 "${PID[$n]}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${PID[$n]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

. tests/bench/cluster-common.sh
dll=$(bench_dll)
read -r PORT[a] PORT[b] PORT[c] < <(free_ports 3)
seeds=(--seed "127.0.0.1:${PORT[a]}" --seed "127.0.0.1:${PORT[b]}" --seed "127.0.0.1:${PORT[c]}")

start_node() { # name: started (or restarted with the same data dir) and waited for until it serves
  local n=$1 before
  mkdir -p "$work/$n"
  before=$(grep -c "node serving" "$work/$n/stdout" 2>/dev/null || true)
  dotnet "$dll" serve --data-dir "$work/$n" --node-name "$n" --cluster "127.0.0.1:${PORT[$n]}" "${seeds[@]}" \
    --listen "unix:$work/$n/nbd.sock" --admin 127.0.0.1:0 ${AC_ARGS:-} >>"$work/$n/stdout" 2>&1 &
  PID[$n]=$!
  for _ in $(seq 600); do
    [ "$(grep -c "node serving" "$work/$n/stdout" 2>/dev/null || true)" -gt "${before:-0}" ] && return 0
    kill -0 "${PID[$n]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "node $n did not start; its log:" >&2; tail -30 "$work/$n/stdout" >&2; exit 1
}
cli() { dotnet "$dll" "$@" --data-dir "$work/a"; }
cli_on() { local n=$1; shift; dotnet "$dll" "$@" --data-dir "$work/$n"; }
admin() { cat "$work/a/admin.url"; }
uri() { echo "nbd+unix:///$1?socket=$work/a/nbd.sock"; }
now() { date +%s.%N; }
fact() { printf '%s\t%s\n' "$1" "$2" >>"$facts"; }
logs() { # why something did not happen: the last lines of every node's log
  for n in a b c; do echo "---- node $n ($work/$n/stdout), last lines:" >&2; grep -v "^\s*$" "$work/$n/stdout" | tail -"${1:-15}" >&2; done
}
peer_field() { # node field: from a's peer status
  curl -s "$(admin)/api/volumes/rc/peers" | /usr/bin/python3 -c '
import json, sys
p = [x for x in json.load(sys.stdin) if x["node"] == sys.argv[1]][0]
print(p[sys.argv[2]])' "$1" "$2"
}
all_up_to_date() { # every replica connected (or local) and UpToDate with nothing out of sync
  cli peer status rc --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
ps = json.load(sys.stdin)
sys.exit(0 if len(ps) == 3 and all(p["disk"] == "UpToDate" and p["outOfSyncBytes"] == 0 and p["connection"] in ("local", "connected") for p in ps) else 1)'
}
wait_up_to_date() { # seconds
  for _ in $(seq "$1"); do all_up_to_date && return 0; sleep 1; done
  echo "rc: not every replica UpToDate after $1 s:" >&2; cli peer status rc >&2 || true; logs; return 1
}

declare -A SPEC=( # compare.sh's job lines, unchanged
  [J1]="--rw=randwrite --bs=4k --iodepth=32"
  [J2]="--rw=randwrite --bs=4k --iodepth=32 --fsync=1"
  [J3]="--rw=write --bs=1M --iodepth=8"
)
# A peer taken out of the stream (ack timeout, or more than max-lag unacknowledged) is logged by a as
# "disconnected from PEER": a run during which that happened did not replicate all along.
peer_drops() { grep -c "disconnected from" "$work/a/stdout" 2>/dev/null || true; }
cpu_ticks() { # the CPU ticks (user + system) of nodes a b c so far, space separated
  local n
  for n in a b c; do awk '{sub(/.*\) /, ""); printf "%d ", $12 + $13}' "/proc/${PID[$n]}/stat" 2>/dev/null || printf '0 '; done
}
# The disk the three nodes share (the one holding $work): flushes completed and sectors written so far, from
# /proc/diskstats (fields 19 and 10). Every node's log fdatasync is a flush of that one disk.
disk=$(lsblk -no PKNAME "$(df --output=source "$work" | tail -1)" 2>/dev/null | head -1)
[ -n "$disk" ] || disk=$(basename "$(df --output=source "$work" | tail -1)")
disk_counts() { awk -v d="$disk" '$3 == d {print $19 + 0, $10; f = 1} END {if (!f) print "0 0"}' /proc/diskstats; }
start_profile() { # name [delay]: a system-wide profile of PERF seconds into $work/perf-NAME.data, in the background
  local name=$1 delay=${2:-0}
  (sleep "$delay"; perf record -a -g -F 499 -o "$work/perf-$name.data" -- sleep "$PERF" >/dev/null 2>&1) &
  profiler=$!
}
end_profile() { # name: waits for the profile, then prints each node's share of its own samples by what it was doing
  wait "$profiler" 2>/dev/null || true; profiler=
  echo "  profile $1 (perf, $PERF s; per node: its samples, then the share of them in each part):" >&2
  perf script -i "$work/perf-$1.data" -F comm,pid,ip,sym,dso 2>/dev/null | /usr/bin/python3 -c '
import collections, sys
nodes = dict(zip(sys.argv[1::2], sys.argv[2::2]))  # pid -> node name
parts = [  # (part, any of these in the call chain), the first that matches
    ("zeroes ahead of the log tail", ["SegmentFiles::ZeroAhead"]),
    ("log append (pwritev)", ["LogAppender::Append"]),
    ("destage (copy_file_range)", ["copy_file_range"]),
    ("CRC32C", ["Crc32C::"]),
    ("fdatasync", ["fdatasync", "LibC::DataSync"]),
    ("index save", ["IndexCapture::", "PersistedIndex::"]),
    ("apply into ring and index", ["CacheWriter", "AppendQueue::"]),
    ("log and backing reads", ["SegmentFiles::TryRead", "FileBacking::ReadAsync"]),
    ("socket receive", ["__libc_recv", "sock_recvmsg"]),
    ("socket send", ["__send", "sock_sendmsg"]),
    ("fresh pages (faults)", ["clear_page_erms"]),
    ("idle threads (spin, wait)", ["sched_yield", "UnfairSemaphore", "LowLevelLifoSemaphore", "futex"]),
]
count, total = collections.defaultdict(collections.Counter), collections.Counter()
def flush(pid, comm, chain):
    if pid not in nodes: return
    text = " ".join(chain)
    part = "JIT" if comm.startswith(".NET Tiered") or "libclrjit" in text else next((p for p, keys in parts if any(k in text for k in keys)), "other")
    count[pid][part] += 1; total[pid] += 1
pid = comm = None; chain = []
for line in sys.stdin:
    if not line.strip():
        if pid: flush(pid, comm, chain)
        pid = None; chain = []
    elif line.startswith("\t"):  # a frame of the call chain
        chain.append(line.strip())
    else:  # a sample: its thread name (may hold spaces), then the process id
        head = line.split()
        pid, comm = head[-1], " ".join(head[:-1])
if pid: flush(pid, comm, chain)
for p, node in sorted(nodes.items(), key=lambda x: x[1]):
    if total[p]:
        print(f"    {node}: {total[p]} samples; " + ", ".join(f"{k} {100 * v / total[p]:.0f}%" for k, v in count[p].most_common()))
' $(for n in a b c; do printf '%s %s ' "${PID[$n]}" "$n"; done) >&2
}
run_fio() { # job volume protocol rep: one time-based run, a row in results (compare.sh's parsing) and one in cpu.tsv
  local out before after disk_before disk_after drops profile=
  before=$(cpu_ticks); disk_before=$(disk_counts)
  drops=$(peer_drops)
  if [ -n "${PERF:-}" ] && [ "$2" = rc ] && [ "$3" = C ] && [ "$4" = 1 ]; then profile=$1-rc; start_profile "$profile" 3; fi
  out=$(fio --name="$1" --ioengine=nbd --uri="$(uri "$2")" ${SPEC[$1]} --size="$SIZE" --runtime="$RUNTIME" --time_based \
        --output-format=json 2>/dev/null || true)
  after=$(cpu_ticks); disk_after=$(disk_counts)
  [ -z "$profile" ] || end_profile "$profile"
  # CPU of each node over the run, in cores (2.0 = two cores busy): where the machine's cycles went; then the
  # shared disk's flushes per second and MiB written per second
  /usr/bin/python3 -c 'import sys; hz, t = int(sys.argv[1]), float(sys.argv[2]); b, a = sys.argv[3].split(), sys.argv[4].split()
db, da = [int(x) for x in sys.argv[5].split()], [int(x) for x in sys.argv[6].split()]
print("\t".join(sys.argv[7:11] + [f"{(int(y) - int(x)) / hz / t:.2f}" for x, y in zip(b, a)]
                + [f"{(da[0] - db[0]) / t:.0f}", f"{(da[1] - db[1]) * 512 / 2**20 / t:.0f}"]))' \
    "$(getconf CLK_TCK)" "$RUNTIME" "$before" "$after" "$disk_before" "$disk_after" "$@" >>"$work/cpu.tsv"
  printf '%s' "$out" >"$work/fio.json"
  /usr/bin/python3 - "$@" "$work/fio.json" "$(( $(peer_drops) - drops ))" <<'PY' >>"$results"
import json, sys
job, vol, proto, rep, path, drops = sys.argv[1:7]
text = open(path).read()
try:
    d = json.loads(text[text.index("{"):])["jobs"][0]
    w = d["write"]; lat = w["clat_ns"].get("percentile", {})
    print(f"{job}\t{vol}\t{proto}\t{rep}\t{w['iops']:.0f}\t{w['bw'] / 1024:.1f}\t{lat.get('50.000000', 0) / 1000:.0f}\t{lat.get('99.000000', 0) / 1000:.0f}\t{drops}")
except Exception:
    print(f"{job}\t{vol}\t{proto}\t{rep}\tnan\tnan\tnan\tnan\t{drops}")
PY
  paste <(tail -1 "$results") <(tail -1 "$work/cpu.tsv") |
    awk -F'\t' '{printf "  %s %-5s protocol %s rep %s: %s IOPS, %s MiB/s; CPU (cores) a %s b %s c %s; disk %s flushes/s, %s MiB/s written; peers dropped %s\n", $1, $2, $3, $4, $5, $6, $14, $15, $16, $17, $18, $9}' >&2
}
ack_latency() { # protocol: what peer status says after that protocol's runs
  local json
  json=$(cli peer status rc --json)
  for n in b c; do
    fact "ack_$1_$n" "$(/usr/bin/python3 -c '
import json, sys
p = [x for x in json.loads(sys.argv[1]) if x["node"] == sys.argv[2]][0]
print("%.0f/%.0f" % (p["ackLatencyP50Micros"], p["ackLatencyP99Micros"]))' "$json" "$n")"
  done
}
start_sampler() { # a's view of c, ten times a second, with wall-clock times: t connection disk outOfSync resyncTotal resyncDone resyncRate
  /usr/bin/python3 - "$(admin)/api/volumes/rc/peers" >"$work/samples.tsv" <<'PY' &
import json, sys, time, urllib.request
while True:
    t = time.time()
    try:
        ps = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
        p = [x for x in ps if x["node"] == "c"][0]
        r = p["resync"] or {}
        print(f"{t:.3f}\t{p['connection']}\t{p['disk']}\t{p['outOfSyncBytes']}\t{r.get('total', 0)}\t{r.get('done', 0)}\t{r.get('bytesPerSecond', 0):.0f}", flush=True)
    except Exception as e:
        print(f"{t:.3f}\terror\t{type(e).__name__}\t0\t0\t0\t0", flush=True)
    time.sleep(max(0, 0.1 - (time.time() - t)))
PY
  sampler=$!
}
stop_sampler() { kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=; }
wait_c_back() { # since: waits until a sample after `since` shows c connected, UpToDate, nothing out of sync
  local deadline=$(( $(date +%s) + RESYNC_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    awk -F'\t' -v s="$1" '$1 > s && $2 == "connected" && $3 == "UpToDate" && $4 == 0 {f = 1} END {exit !f}' "$work/samples.tsv" && return 0
    sleep 0.5
  done
  return 1
}
timeline() { # prefix since: from the samples, when c reconnected after `since`, what it lacked, when it was UpToDate
  /usr/bin/python3 - "$work/samples.tsv" "$2" <<'PY' | while IFS=$'\t' read -r k v; do fact "$1_$k" "$v"; done
import sys
since = float(sys.argv[2])
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rows = [(float(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in rows if len(r) == 7 and r[1] != "error"]
after = [r for r in rows if r[0] > since]
away = next((r for r in after if r[1] != "connected"), None)
out = {}
if away:
    out["away_seen"] = f"{away[0] - since:.1f}"
    back = next((r for r in after if r[0] > away[0] and r[1] == "connected"), None)
    if back:
        out["reconnect_s"] = f"{back[0] - since:.1f}"
        # what it lacked when it came back: the resync's total, else the bitmap
        first = [r for r in after if back[0] <= r[0] <= back[0] + 1.0]
        lacked = max(max(r[3], r[4]) for r in first)
        out["oos_bytes"] = str(max(lacked, max(r[3] for r in after if r[0] <= back[0])))
        done = next((r for r in after if r[0] >= back[0] and r[1] == "connected" and r[2] == "UpToDate" and r[3] == 0), None)
        if done:
            out["uptodate_s"] = f"{done[0] - since:.1f}"
            out["sync_s"] = f"{done[0] - back[0]:.2f}"
        out["max_rate"] = str(max((r[6] for r in after), default=0))
    out["states"] = " -> ".join(dict.fromkeys(f"{r[1]}/{r[2]}" for r in after))
out["max_oos_bytes"] = str(max((r[3] for r in after), default=0))
for k, v in out.items(): print(f"{k}\t{v}")
PY
}

fact load_at_start "$(cut -d' ' -f1-3 /proc/loadavg)"
fact size_mib "$(/usr/bin/python3 -c "import sys; s = sys.argv[1].upper(); m = {'K': 1 / 1024, 'M': 1, 'G': 1024, 'T': 1024 * 1024}; print(int(float(s[:-1]) * m[s[-1]]) if s[-1] in m else int(s) // 1048576)" "$SIZE")"

# ---- three nodes, one cluster ----
echo "starting nodes a, b, c (cluster ports ${PORT[a]} ${PORT[b]} ${PORT[c]})..." >&2
for n in a b c; do start_node "$n"; done
for _ in $(seq 120); do
  up=$(cli cluster show --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(sum(m["status"] == "Up" for m in json.load(sys.stdin)))' || echo 0)
  [ "$up" = 3 ] && break; sleep 1
done
[ "$up" = 3 ] || { echo "the cluster did not reach 3 Up members:" >&2; cli cluster show >&2 || true; logs; exit 1; }

cli volume create rc --size "$SIZE" --replicas a,b,c --protocol C >&2
cli volume create plain --size "$SIZE" >&2
# Both volumes written in full first: the first writes to a fresh volume measure backing allocation.
for v in plain rc; do fio --name=fill --ioengine=nbd --uri="$(uri "$v")" --rw=write --bs=1M --iodepth=8 --size="$SIZE" --end_fsync=1 >/dev/null 2>&1; done
wait_up_to_date 120

# ---- throughput under protocol C, then J1 under each other protocol ----
# Warm-up, not counted: a node compiles its hot paths again and again for a minute or more (tier 0, then
# instrumented, then optimized), and on these two shared cores that JIT work took 5% of the primary's samples
# and 22-24% of each secondary's in the first measured rc run (PERF=) without it.
if [ "$WARMUP" != 0 ] && [ -n "${JOBS// }${PROTOCOLS// }" ]; then
  echo "warm-up: J1 and J2 on plain and rc for $WARMUP s each, not counted..." >&2
  for job in J1 J2; do for v in plain rc; do
    fio --name=warm --ioengine=nbd --uri="$(uri "$v")" ${SPEC[$job]} --size="$SIZE" --runtime="$WARMUP" --time_based >/dev/null 2>&1 || true
  done; done
fi
for job in $JOBS; do
  echo "$job, protocol C:" >&2
  for rep in $(seq "$REPS"); do run_fio "$job" plain C "$rep"; run_fio "$job" rc C "$rep"; done
done
ack_latency C
for proto in $PROTOCOLS; do
  cli volume protocol rc "$proto" >/dev/null
  echo "J1, protocol $proto:" >&2
  for rep in $(seq "$REPS"); do run_fio J1 plain "$proto" "$rep"; run_fio J1 rc "$proto" "$rep"; done
  ack_latency "$proto"
done
cli volume protocol rc C >/dev/null
wait_up_to_date 120

# ---- R1: resync of what c missed while it was stopped ----
if [[ " $RESYNCS " == *" R1 "* ]]; then
echo "R1: c leaves and stops, $SIZE written to rc, c restarts..." >&2
cli cluster leave c >/dev/null
for _ in $(seq 600); do kill -0 "${PID[c]}" 2>/dev/null || break; sleep 0.1; done
if kill -0 "${PID[c]}" 2>/dev/null; then echo "c did not stop within 60 s of cluster leave" >&2; logs; kill -TERM "${PID[c]}"; fi
wait "${PID[c]}" 2>/dev/null || true
for _ in $(seq 100); do [ "$(peer_field c connection)" != connected ] && break; sleep 0.2; done
fact r1_c_seen_as "$(peer_field c connection)/$(peer_field c disk)"
t=$(now); drops=$(peer_drops)
fio --name=r1 --ioengine=nbd --uri="$(uri rc)" --rw=write --bs=1M --iodepth=8 --size="$SIZE" --end_fsync=1 >/dev/null 2>&1
fact r1_write_s "$(/usr/bin/python3 -c "import time; print(f'{time.time() - $t:.1f}')")"
fact r1_oos_before_restart "$(peer_field c outOfSyncBytes)"
fact r1_b_drops_during_write "$(( $(peer_drops) - drops ))"
start_sampler
t=$(now)
before=$(cpu_ticks)
start_node c
[ -z "${PERF:-}" ] || start_profile r1
fact r1_node_start_s "$(/usr/bin/python3 -c "import time; print(f'{time.time() - $t:.1f}')")"
if wait_c_back "$t"; then fact r1_result done; else fact r1_result "not UpToDate after $RESYNC_TIMEOUT s"; cli peer status rc >&2 || true; logs 30; fi
# CPU seconds each node spent from c's start until it was UpToDate (c's from its start, its start included)
fact r1_cpu_s_abc "$(/usr/bin/python3 -c 'import sys; hz = int(sys.argv[1]); b, a = sys.argv[2].split(), sys.argv[3].split()
print("/".join(f"{(int(y) - (int(x) if i < 2 else 0)) / hz:.1f}" for i, (x, y) in enumerate(zip(b, a))))' "$(getconf CLK_TCK)" "$before" "$(cpu_ticks)")"
stop_sampler
[ -z "${PERF:-}" ] || end_profile r1
timeline r1 "$t"
cp "$work/samples.tsv" "$work/r1-samples.tsv"
else fact r1_result "not run (RESYNCS)"; fi

# ---- R2: catch-up after a 10 s outage under J1 ----
r2_ok=1
[[ " $RESYNCS " == *" R2 "* ]] || r2_ok=
[ -z "$r2_ok" ] || wait_up_to_date 60 || r2_ok=
if [ -n "$r2_ok" ]; then
  echo "R2: J1 on rc, c stopped for $OUTAGE s..." >&2
  fio --name=J1 --ioengine=nbd --uri="$(uri rc)" ${SPEC[J1]} --size="$SIZE" --runtime=$((OUTAGE + 65)) --time_based \
    --output-format=json >"$work/r2-fio.json" 2>/dev/null &
  load=$!
  start_sampler
  sleep 5
  kill -STOP "${PID[c]}"; sleep "$OUTAGE"; kill -CONT "${PID[c]}"
  t=$(now)
  if wait_c_back "$t"; then fact r2_result done; else fact r2_result "not UpToDate after $RESYNC_TIMEOUT s"; cli peer status rc >&2 || true; logs 30; fi
  fact r2_j1_running "$(kill -0 "$load" 2>/dev/null && echo yes || echo no)"
  kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true; load=
  stop_sampler
  timeline r2 "$t"
  cp "$work/samples.tsv" "$work/r2-samples.tsv"
else
  fact r2_result "not run (RESYNCS, or rc was not UpToDate everywhere after R1)"
fi

# ---- R3: failover under J1: a SIGKILLed, a secondary promoted, a restarted ----
if [[ " $RESYNCS " == *" R3 "* ]] && wait_up_to_date 60; then
  echo "R3: J1 on rc, a SIGKILLed after 8 s, a secondary promoted, a restarted..." >&2
  fio --name=J1 --ioengine=nbd --uri="$(uri rc)" ${SPEC[J1]} --size="$SIZE" --runtime=60 --time_based >/dev/null 2>&1 &
  load=$!
  sleep 8
  kill -KILL "${PID[a]}"; wait "${PID[a]}" 2>/dev/null || true
  wait "$load" 2>/dev/null || true; load=
  t=$(now); promoted=; chosen=b
  for _ in $(seq 240); do
    if out=$(cli_on "$chosen" volume promote rc --node "$chosen" 2>&1); then promoted=$chosen; break; fi
    # the other secondary may hold a newer batch of a (the promotion rule names it)
    newer=$(grep -o "node [a-z] holds newer data" <<<"$out" | awk '{print $2}' || true)
    [ -n "$newer" ] && chosen=$newer
    sleep 0.5
  done
  fact r3_promote_s "$(/usr/bin/python3 -c "import time; print(f'{time.time() - $t:.1f}')")"
  if [ -n "$promoted" ]; then
    fact r3_promoted "$promoted"
    t=$(now)
    start_node a
    back=
    for _ in $(seq "$RESYNC_TIMEOUT"); do
      if cli_on "$promoted" peer status rc --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
ps = json.load(sys.stdin)
sys.exit(0 if len(ps) == 3 and all(p["disk"] == "UpToDate" and p["outOfSyncBytes"] == 0 and p["connection"] in ("local", "connected") for p in ps) else 1)'; then back=1; break; fi
      sleep 1
    done
    fact r3_back_s "$([ -n "$back" ] && /usr/bin/python3 -c "import time; print(f'{time.time() - $t:.1f}')" || echo "not UpToDate after $RESYNC_TIMEOUT s")"
    # What the new primary said it resyncs: "the logs narrow the resync of a to N blocks", or a full resync.
    fact r3_narrowed "$(grep -o "the logs narrow the resync of [a-z] to [0-9]* blocks" "$work/$promoted/stdout" | awk '{printf "%s=%s ", $7, $9}')"
    fact r3_full "$(grep "a full resync" "$work/$promoted/stdout" | grep -vc "instead of a full resync" || true)"
  else
    fact r3_result "no promotion within 120 s: $out"
  fi
fi

fact load_at_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the table ----
/usr/bin/python3 - "$results" "$facts" "$REPS" "$RUNTIME" "$OUTAGE" "$PROTOCOLS" "$work/cpu.tsv" "$(nproc) cores" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)
drops_in = {}
for line in open(sys.argv[1]):
    job, vol, proto, rep, iops, bw, p50, p99, drops = line.rstrip("\n").split("\t")
    rows[(job, proto)].setdefault(vol, []).append((int(rep), float(iops)))
    if vol == "rc": drops_in[(job, proto)] = drops_in.get((job, proto), 0) + int(drops)
facts = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[2]))
reps, runtime, outage, protocols = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].split()
target = {("J1", "C"): 0.6, ("J2", "C"): 0.6, ("J3", "C"): 0.5, ("J1", "A"): 0.9}
def med(v): v = [x for x in v if x == x]; return statistics.median(v) if v else float("nan")
print(f"| measure | result | target | met |")
print("|---|---:|---:|---|")
for (job, proto), by in sorted(rows.items(), key=lambda kv: ({"C": 0, "A": 1, "B": 2}.get(kv[0][1], 3), kv[0][0])):
    rc, plain = by.get("rc", []), by.get("plain", [])
    m_rc, m_plain = med([i for _, i in rc]), med([i for _, i in plain])
    ratio = m_rc / m_plain if m_plain > 0 else float("nan")
    pairs = sorted(r / p for (_, r), (_, p) in zip(sorted(rc), sorted(plain)) if p > 0 and r == r)
    spread = f", runs {pairs[0]:.2f}-{pairs[-1]:.2f}x" if len(pairs) > 1 else ""
    t = target.get((job, proto))
    met = "-" if t is None else ("yes" if ratio >= t else "no")
    d = drops_in.get((job, proto), 0)
    dropped = f"; peers dropped {d} times during these rc runs" if d else ""
    if d and met == "yes": met = "not as measured: peers dropped"
    print(f"| {job} protocol {proto} vs unreplicated (IOPS {m_rc:.0f} / {m_plain:.0f}{spread}{dropped}) | {ratio:.2f}x | {f'>= {t}x' if t else '-'} | {met} |")
for proto in ["C"] + protocols:
    b, c = facts.get(f"ack_{proto}_b"), facts.get(f"ack_{proto}_c")
    if b: print(f"| ack latency p50/p99 after protocol {proto}'s runs, peer b / c (us, cumulative since connect) | {b} / {c} | report | - |")
def secs(k): return float(facts[k]) if k in facts else None
oos, sync = facts.get("r1_oos_bytes"), secs("r1_sync_s")
if facts.get("r1_result") == "done" and oos and sync:
    rate = int(oos) / 1048576 / sync if sync > 0 else float("inf")
    print(f"| R1 resync after c was stopped: {int(oos) / 1048576:.0f} MiB out of sync at reconnect, {sync:.1f} s from reconnect to UpToDate (reconnect {facts.get('r1_reconnect_s')} s after restart) | {rate:.0f} MiB/s | >= 300 MiB/s | {'yes' if rate >= 300 else 'no'} |")
else:
    print(f"| R1 resync after c was stopped | {facts.get('r1_result')}; states {facts.get('r1_states')} | >= 300 MiB/s | no |")
up = secs("r2_uptodate_s")
if facts.get("r2_result") == "done" and up is not None:
    print(f"| R2 catch-up after a {outage} s SIGSTOP under J1: UpToDate after SIGCONT ({int(facts.get('r2_oos_bytes', facts.get('r2_max_oos_bytes', 0))) / 1048576:.0f} MiB out of sync; J1 still running: {facts.get('r2_j1_running')}) | {up:.1f} s | <= 10 s | {'yes' if up <= 10 else 'no'} |")
else:
    print(f"| R2 catch-up after a {outage} s SIGSTOP under J1 | {facts.get('r2_result')}; states {facts.get('r2_states')} | <= 10 s | no |")
if "r3_narrowed" in facts:
    size_mib = facts.get("size_mib")
    moved = " ".join(f"{kv.split('=')[0]}: {int(kv.split('=')[1]) * 4096 / 1048576:.1f} MiB" for kv in facts["r3_narrowed"].split())
    ok = facts["r3_narrowed"].strip() != "" and facts.get("r3_full", "0") == "0"
    print(f"| R3 failover under J1: a SIGKILLed, {facts.get('r3_promoted')} promoted ({facts.get('r3_promote_s')} s), a restarted: resynced by the new primary (narrowed by the logs, of {size_mib} MiB) | {moved}; every replica UpToDate {facts.get('r3_back_s')} s after a's restart | less than a full resync | {'yes' if ok else 'no'} |")
elif "r3_result" in facts:
    print(f"| R3 failover under J1 | {facts['r3_result']} | less than a full resync | no |")
cpu = collections.defaultdict(list)
for line in open(sys.argv[7]):
    job, vol, proto, rep, a, b, c, flushes, written = line.rstrip("\n").split("\t")
    cpu[(job, vol, proto)].append((float(a), float(b), float(c), float(flushes), float(written)))
print("\nCPU of each node during the runs (cores, median; the machine has " + sys.argv[8] + "), and the disk the three share:\n")
print("| job | volume | protocol | a | b | c | disk flushes/s | disk MiB/s written |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for (job, vol, proto), v in sorted(cpu.items(), key=lambda kv: ({"C": 0, "A": 1, "B": 2}.get(kv[0][2], 3), kv[0][0], kv[0][1])):
    print(f"| {job} | {vol} | {proto} | " + " | ".join(f"{statistics.median(x[i] for x in v):.2f}" for i in range(3)) + " | "
          + " | ".join(f"{statistics.median(x[i] for x in v):.0f}" for i in (3, 4)) + " |")
print(f"\nREPS={reps} RUNTIME={runtime}; ratios are rc (3 replicas) over plain (node a alone), medians of alternating runs.")
print("facts:", "; ".join(f"{k}={v}" for k, v in facts.items()))
PY
