#!/usr/bin/env bash
# J9 (one client, 4k random writes at queue depth 1, a FLUSH after each) on a log in service rather than a fresh
# one: compare.sh's J9 runs on a new log's first pass, this runs where a volume spends its life.
#  - the log (512 MiB) is wrapped by 1 GiB of 1 MiB writes, everything destaged as it goes, so its spare segments
#    are recycled files whose earlier life did not write their ends (a batch that did not fit went to the next one);
#  - STATE=pastcap (default): then filled past its retention cap, so every commit's blocks are also destaged
#    beside the runs; STATE=belowcap: drained again before every run, so the runs stay below the cap (no destage);
#  - every run starts the node again (so it also appends to a segment a restarted node reopened), then J9 for
#    RUNTIME seconds, with the node's own breakdown of a commit (waking the flusher, log write, fdatasync) and
#    the blocks it destaged meanwhile; nbdkit-file alternates with it on a written file of the same size.
# Usage: tests/bench/commit-steady.sh   (REPS=3 RUNTIME=6 STATE=pastcap; AC_ARGS="--set k=v ..." for both builds)
# A/B: BASE=/path/to/old/ActorCache.dll adds that build as actorcache-base, prepared and run the same way.
# Needs fio, nbdkit, curl, python3, dotnet.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-6}
STATE=${STATE:-pastcap}
work=$(mktemp -d /tmp/actorcache-steady.XXXXXX)
pids=()
pid=
cleanup() {
  for p in "${pids[@]}" $pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

echo "building ActorCache (Release)..." >&2
dotnet build src/ActorCache -c Release -v quiet -nologo >/dev/null
declare -A DLL=([actorcache]=src/ActorCache/bin/Release/net10.0/ActorCache.dll)
[ -n "${BASE:-}" ] && DLL[actorcache-base]=$BASE
builds="actorcache${BASE:+ actorcache-base}"

for name in $builds nbdkit-file; do
  fio --name=fill --filename="$work/$name.img" --rw=write --bs=1M --size=1G --ioengine=psync --end_fsync=1 >/dev/null
done

start() { # build [--set ...]
  local b=$1; shift
  dotnet "${DLL[$b]}" serve --data-dir "$work/$b" --listen "unix:$work/$b.sock" --admin 127.0.0.1:0 --cluster 127.0.0.1:0 \
    --volume "bench:1G:write-back:backing=$work/$b.img" --set actorcache.cache.log-capacity=512M ${AC_ARGS:-} "$@" >"$work/$b.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q "node serving" "$work/$b.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "$b did not start: $(tail -5 "$work/$b.log")" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
uri() { echo "nbd+unix:///bench?socket=$work/$1.sock"; }
segments() { find "$work/$1/log/bench" -name 'segment-*' | wc -l; }

drain() { # build: everything destaged, the log down to its tail segment and its spares
  start "$1" --set actorcache.cache.retention-time=0s
  for _ in $(seq 240); do [ "$(segments "$1")" -le 1 ] && break; sleep 0.5; done
  [ "$(segments "$1")" -le 1 ] || echo "$1: the log still has $(segments "$1") segments after 120 s of destaging" >&2
  stop
}

for b in $builds; do
  # Wrap the log (retention 0: everything is destaged as it goes, released segments become spares).
  start "$b" --set actorcache.cache.retention-time=0s
  fio --name=wrap --ioengine=nbd --uri="$(uri "$b")" --rw=write --bs=1M --iodepth=8 --size=1G --end_fsync=1 >/dev/null
  stop
  drain "$b"
  if [ "$STATE" = pastcap ]; then
    start "$b"
    fio --name=pastcap --ioengine=nbd --uri="$(uri "$b")" --rw=write --bs=1M --iodepth=8 --size=600M --end_fsync=1 >/dev/null
    sleep 3
    stop
  fi
done
nbdkit -f -U "$work/nbdkit-file.sock" file "$work/nbdkit-file.img" & pids+=($!)
for _ in $(seq 100); do [ -S "$work/nbdkit-file.sock" ] && break; sleep 0.1; done

counters() { # build: commits wake write sync destaged
  curl -s "$(cat "$work/$1/admin.url")/metrics" | awk '
    /^actorcache_log_commits_total/ {c += $2}
    /^actorcache_log_commit_seconds_total/ && /stage="wake"/ {k += $2}
    /^actorcache_log_commit_seconds_total/ && /stage="write"/ {w += $2}
    /^actorcache_log_commit_seconds_total/ && /stage="sync"/ {s += $2}
    /^actorcache_cache_blocks_destaged_total/ {d += $2}
    END {printf "%.0f %.9f %.9f %.9f %.0f\n", c, k, w, s, d}'
}
j9() { # server uri [before after]: a row of the results
  fio --name=j9 --ioengine=nbd --uri="$2" --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --size=1G --runtime="$RUNTIME" --time_based \
    --output-format=json --output="$work/j9.json" >/dev/null 2>&1 || true
  /usr/bin/python3 - "$1" "$work/j9.json" <<'PY'
import json, sys
t = open(sys.argv[2]).read()
try:
    d = json.loads(t[t.index("{"):])["jobs"][0]
    p = d["sync"]["lat_ns"]["percentile"]
    print(f"{sys.argv[1]}\t{d['write']['iops']:.0f}\t{p['50.000000'] / 1000:.0f}\t{p['99.000000'] / 1000:.0f}", end="")
except Exception:
    print(f"{sys.argv[1]}\tnan\tnan\tnan", end="")
PY
}
results=$work/results.tsv
for rep in $(seq "$REPS"); do
  for b in $builds; do
    [ "$STATE" = belowcap ] && drain "$b"
    start "$b"
    before=$(counters "$b")
    row=$(j9 "$b" "$(uri "$b")")
    after=$(counters "$b")
    stop
    printf '%s\t%s\t%s\n' "$row" "$before" "$after" >>"$results"
  done
  printf '%s\n' "$(j9 nbdkit-file "nbd+unix:///?socket=$work/nbdkit-file.sock")" >>"$results"
done

/usr/bin/python3 - "$results" "$STATE" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    iops, p50, p99 = (float(x) for x in f[1:4])
    breakdown = None
    if len(f) > 4:
        b = [float(x) for x in f[4].split()]; a = [float(x) for x in f[5].split()]
        commits, wake, write, sync, destaged = (y - x for x, y in zip(b, a))
        if commits > 0:
            breakdown = (wake / commits * 1e6, write / commits * 1e6, sync / commits * 1e6, destaged)
    rows[f[0]].append((iops, p50, p99, breakdown))
def med(v):
    v = [x for x in v if x == x]  # a failed run is NaN
    return statistics.median(v) if v else float("nan")
file_iops = med([r[0] for r in rows["nbdkit-file"] if r[0] == r[0]])
base_iops = med([r[0] for r in rows.get("actorcache-base", []) if r[0] == r[0]])
print(f"J9 with the log {'past' if sys.argv[2] == 'pastcap' else 'below'} its retention cap, medians of {len(rows['nbdkit-file'])} runs:")
print("| server | IOPS | FLUSH p50 (us) | FLUSH p99 (us) | vs nbdkit-file | per commit: wake / log write / fdatasync (us) | blocks destaged per run |")
print("|---|---:|---:|---:|---:|---|---:|")
for server in ["actorcache", "actorcache-base", "nbdkit-file"]:
    if server not in rows: continue
    v = rows[server]
    iops = med([r[0] for r in v if r[0] == r[0]])
    parts = [r[3] for r in v if r[3]]
    split = " / ".join(f"{med([p[i] for p in parts]):.0f}" for i in range(3)) if parts else "-"
    destaged = f"{med([p[3] for p in parts]):.0f}" if parts else "-"
    print(f"| {server} | {iops:.0f} | {med([r[1] for r in v]):.0f} | {med([r[2] for r in v]):.0f} | {iops / file_iops:.2f}x | {split} | {destaged} |")
if base_iops == base_iops:
    print(f"actorcache vs actorcache-base: {med([r[0] for r in rows['actorcache']]) / base_iops:.2f}x IOPS")
PY
