#!/usr/bin/env bash
# Compares ActorCache (write-back) with nbdkit's file plugin, qemu-nbd and nbdkit's memory plugin (the
# machine's NBD ceiling) on the same machine in one run, alternating servers job by job.
# Usage: tests/bench/compare.sh            (REPS=3 RUNTIME=10 SIZE=1G JOBS="J1 J2 ..." to change)
# A/B against another build: BASE=/path/to/old/ActorCache.dll adds it as server "actorcache-base", run
# alternately with this build in the same repetitions (SERVERS="actorcache actorcache-base" for just the two).
# Needs: fio, nbdkit, qemu-utils (qemu-nbd), python3 (Debian's), dotnet. Run as root for J5 (drops the page cache).
# AC_ARGS="--set k=v ..." starts both ActorCache builds with those settings too (e.g. a small log, so J1 passes
# the retention cap within a short run and every write also pays its destage).
# J9 is the database pattern: 4k random writes at queue depth 1, a FLUSH after each (p50/p99 are the FLUSH's); J10 the
# same with FUA writes (run with nbdsh: fio cannot send FUA); J11/J12 the qemu-img bench commit patterns.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1G}
JOBS=${JOBS:-"J1 J2 J3 J4 J5 J6 J7 J8 J9 J10 J11 J12"}
work=$(mktemp -d /tmp/actorcache-bench.XXXXXX)
results=$work/results.tsv
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

echo "building ActorCache (Release)..." >&2
dotnet build src/ActorCache -c Release -v quiet -nologo >/dev/null
dll=src/ActorCache/bin/Release/net10.0/ActorCache.dll

# Every backing is written in full first: a sparse file makes the first writes measure block allocation.
for name in ac kfile qemu ${BASE:+acbase}; do
  fio --name=fill --filename="$work/$name.img" --rw=write --bs=1M --size="$SIZE" --ioengine=psync --end_fsync=1 >/dev/null
done

wait_socket() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "no socket $1" >&2; exit 1; }

ac_pid=
start_actorcache() { # extra --set arguments follow
  # Admin on any free port: the default 9460 may belong to a node the user runs.
  dotnet "$dll" serve --data-dir "$work/acdata" --listen "unix:$work/ac.sock" --admin 127.0.0.1:0 --cluster 127.0.0.1:0 \
    --volume "bench:$SIZE:write-back:backing=$work/ac.img" ${AC_ARGS:-} "$@" >>"$work/ac.log" 2>&1 &
  ac_pid=$!
  pids+=("$ac_pid")
  for _ in $(seq 200); do grep -q "node serving" "$work/ac.log" 2>/dev/null && break; sleep 0.1; done
}
stop_actorcache() { kill -TERM "$ac_pid"; wait "$ac_pid" 2>/dev/null || true; : >"$work/ac.log"; }
start_base() { # the build to compare against, if any
  [ -n "${BASE:-}" ] || return 0
  dotnet "$BASE" serve --data-dir "$work/acbasedata" --listen "unix:$work/acbase.sock" --admin 127.0.0.1:0 \
    --volume "bench:$SIZE:write-back:backing=$work/acbase.img" ${AC_ARGS:-} >>"$work/acbase.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q "node serving" "$work/acbase.log" 2>/dev/null && break; sleep 0.1; done
}
start_others() {
  nbdkit -f -U "$work/kfile.sock" file "$work/kfile.img" & pids+=($!)
  qemu-nbd -k "$work/qemu.sock" -f raw --cache=writeback --aio=threads -x bench --persistent --shared=8 "$work/qemu.img" & pids+=($!)
  nbdkit -f -U "$work/kmem.sock" memory "$SIZE" & pids+=($!)
  for s in kfile qemu kmem; do wait_socket "$work/$s.sock"; done
}

declare -A URI=(
  [actorcache]="nbd+unix:///bench?socket=$work/ac.sock"
  [nbdkit-file]="nbd+unix:///?socket=$work/kfile.sock"
  [qemu-nbd]="nbd+unix:///bench?socket=$work/qemu.sock"
  [nbdkit-memory]="nbd+unix:///?socket=$work/kmem.sock"
  [actorcache-base]="nbd+unix:///bench?socket=$work/acbase.sock"
)
declare -A SPEC=(
  [J1]="--rw=randwrite --bs=4k --iodepth=32"
  [J2]="--rw=randwrite --bs=4k --iodepth=32 --fsync=1"
  [J3]="--rw=write --bs=1M --iodepth=8"
  [J4]="--rw=randread --bs=4k --iodepth=32"
  [J5]="--rw=randread --bs=4k --iodepth=32"
  [J6]="--rw=read --bs=1M --iodepth=8"
  [J7]="--rw=randrw --rwmixread=70 --bs=4k --iodepth=32 --fsync=32"
  [J8]="--rw=randrw --rwmixread=70 --bs=4k --iodepth=32 --fsync=32"
  [J9]="--rw=randwrite --bs=4k --iodepth=1 --fsync=1"
)

# J11/J12: the same commit pattern as QEMU sends it: qemu-img bench, 4k writes, a FLUSH after every one at depth 1
# (J11) and after every 32 at depth 32 (J12, qemu drains before each flush). IOPS = requests / run time.
run_qemu_bench() { # job server uri
  local depth=1 every=1 count=${QEMU_BENCH_COUNT:-5000}
  [ "$1" = J12 ] && { depth=32; every=32; count=$((count * 10)); }
  local secs
  secs=$(qemu-img bench -w -c "$count" -d "$depth" -s 4096 -S 4096 --flush-interval="$every" -f raw "$3" 2>/dev/null |
         awk '/Run completed in/ {print $4}')
  if [ -n "$secs" ]; then
    /usr/bin/python3 -c "import sys; n, t = int(sys.argv[3]), float(sys.argv[4]); print(f'{sys.argv[1]}\t{sys.argv[2]}\t{n / t:.0f}\t{n * 4096 / t / 1048576:.1f}\tnan\tnan')" \
      "$1" "$2" "$count" "$secs" >>"$results"
  else
    printf '%s\t%s\tnan\tnan\tnan\tnan\n' "$1" "$2" >>"$results"
  fi
}

# J10: one client, 4k random writes with FUA, one at a time (fio's nbd engine cannot set FUA: libnbd's nbdsh does).
run_fua() { # server uri
  PATH=/usr/bin:$PATH nbdsh -u "$2" -c "
import random, time
size = h.get_size(); buf = bytearray(random.randbytes(4096)); lat = []
end = time.monotonic() + $RUNTIME
while time.monotonic() < end:
    off = random.randrange(size // 4096) * 4096
    t = time.perf_counter_ns(); h.pwrite(buf, off, nbd.CMD_FLAG_FUA); lat.append(time.perf_counter_ns() - t)
lat.sort(); n = len(lat)
print(f'J10\t$1\t{n / $RUNTIME:.0f}\t{n * 4096 / $RUNTIME / 1048576:.1f}\t{lat[n * 99 // 100] / 1000:.0f}\t{lat[n // 2] / 1000:.0f}')
" >>"$results" 2>/dev/null || printf 'J10\t%s\tnan\tnan\tnan\tnan\n' "$1" >>"$results"
}

run_fio() { # job server uri [runtime]
  local out
  out=$(fio --name="$1" --ioengine=nbd --uri="$3" ${SPEC[$1]} --size="$SIZE" --runtime="${4:-$RUNTIME}" --time_based \
        --output-format=json 2>/dev/null || true)
  printf '%s' "$out" >"$work/fio.json"
  /usr/bin/python3 - "$1" "$2" "$work/fio.json" <<'PY' >>"$results"
import json, sys
job, server = sys.argv[1], sys.argv[2]
text = open(sys.argv[3]).read()
try:
    d = json.loads(text[text.index("{"):])["jobs"][0]
except Exception:
    print(f"{job}\t{server}\tnan\tnan\tnan\tnan"); sys.exit()
w, r = d["write"], d["read"]
iops = w["iops"] + r["iops"]
bw = (w["bw"] + r["bw"]) / 1024
main = w if w["iops"] >= r["iops"] else r
lat = main["clat_ns"].get("percentile", {})
if job == "J9":  # the database pattern: what a commit costs is the FLUSH's latency
    lat = d["sync"]["lat_ns"].get("percentile", {})
p50 = lat.get("50.000000", 0) / 1000
p99 = lat.get("99.000000", 0) / 1000
print(f"{job}\t{server}\t{iops:.0f}\t{bw:.1f}\t{p99:.0f}\t{p50:.0f}")
PY
}

start_others
start_actorcache
start_base
servers=${SERVERS:-"actorcache nbdkit-file qemu-nbd nbdkit-memory${BASE:+ actorcache-base}"}
for job in $JOBS; do
  case $job in
    J4|J6) # data in cache: read it once first
      for s in $servers; do fio --name=warm --ioengine=nbd --uri="${URI[$s]}" --rw=read --bs=1M --iodepth=8 --size="$SIZE" >/dev/null 2>&1 || true; done ;;
    J5) # cold: ActorCache destages everything and restarts; every server starts with an empty page cache
      stop_actorcache
      start_actorcache --set actorcache.cache.retention-time=0s
      for _ in $(seq 600); do [ "$(find "$work/acdata/log/bench" -name 'segment-*' | wc -l)" -le 1 ] && break; sleep 0.5; done
      stop_actorcache; start_actorcache
      sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "J5: cannot drop the page cache (not root); reads may be warm" >&2 ;;
    J8) # a slow backing disk: every backing write costs 5 ms
      stop_actorcache
      start_actorcache --set actorcache.cache.backing-write-delay=5ms --set actorcache.cache.log-capacity=4G
      nbdkit -f -U "$work/kslow.sock" --filter=delay file "$work/kfile.img" wdelay=5ms & pids+=($!)
      wait_socket "$work/kslow.sock"
      for rep in $(seq "$REPS"); do
        run_fio J8 actorcache "${URI[actorcache]}" 10
        run_fio J8 nbdkit-file "nbd+unix:///?socket=$work/kslow.sock" 10
      done
      # Steady state: a log that fills within the run, then the backing's speed shows.
      stop_actorcache
      start_actorcache --set actorcache.cache.backing-write-delay=5ms --set actorcache.cache.log-capacity=256M \
        --set actorcache.cache.segment-size=16M --set actorcache.cache.retention-time=0s
      run_fio J8 actorcache-steady "${URI[actorcache]}" 60
      continue ;;
  esac
  for rep in $(seq "$REPS"); do
    for s in $servers; do
      case $job in
        J10) run_fua "$s" "${URI[$s]}" ;;
        J11|J12) run_qemu_bench "$job" "$s" "${URI[$s]}" ;;
        *) run_fio "$job" "$s" "${URI[$s]}" ;;
      esac
    done
  done
done
rss=$(awk '/VmHWM/ {print $2}' "/proc/$ac_pid/status" 2>/dev/null || echo 0)
# Whether the writes also paid their destage (past the retention cap, every cached write does).
destaged=$(curl -s "$(cat "$work/acdata/admin.url" 2>/dev/null)/metrics" 2>/dev/null |
  awk '/^actorcache_cache_blocks_destaged_total/ {s += $2} END {printf "%.0f", s}')

/usr/bin/python3 - "$results" "$rss" "${destaged:-0}" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    job, server, iops, bw, p99, p50 = line.rstrip("\n").split("\t")
    rows[(job, server)].append((float(iops), float(bw), float(p99), float(p50)))
def med(job, server, i):
    v = [r[i] for r in rows.get((job, server), []) if r[i] == r[i]]
    return statistics.median(v) if v else float("nan")
has_base = any(server == "actorcache-base" for _, server in rows)
print("| job | server | IOPS | MiB/s | p50 (us) | p99 (us) | vs nbdkit-file | vs nbdkit-memory |" + (" vs actorcache-base |" if has_base else ""))
print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if has_base else ""))
for job in sorted({j for j, _ in rows}, key=lambda j: int(j[1:])):
    for server in ["actorcache", "actorcache-base", "actorcache-steady", "nbdkit-file", "qemu-nbd", "nbdkit-memory"]:
        if (job, server) not in rows: continue
        iops, bw, p99, p50 = (med(job, server, i) for i in range(4))
        base = med(job, "nbdkit-file", 0); mem = med(job, "nbdkit-memory", 0)
        ratio = lambda b: f"{iops / b:.2f}x" if b == b and b > 0 else "-"
        line = f"| {job} | {server} | {iops:.0f} | {bw:.1f} | {p50:.0f} | {p99:.0f} | {ratio(base)} | {ratio(mem)} |"
        if has_base: line += f" {ratio(med(job, 'actorcache-base', 0))} |"
        print(line)
print(f"\nActorCache peak RSS: {int(sys.argv[2]) / 1024:.0f} MiB; blocks it destaged to its backing since its last start: {sys.argv[3]}")
PY
