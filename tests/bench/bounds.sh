#!/usr/bin/env bash
# Measures the machine limits that bound the targets compare.sh misses, so a miss comes with numbers:
#  - disk: sequential 1 MiB O_DIRECT writes (J3/J8 steady: ActorCache writes every byte twice, to the
#    log and to the backing, and fdatasyncs both; nbdkit-file writes once, into the page cache);
#  - fdatasync: 4 KiB write + fdatasync on a fully written file (J2: every FLUSH costs one), and 64 KiB
#    appends + fdatasync into a new fallocated file against a written one (why log segments are recycled);
#  - CPU per request: J1 (4k random writes), J4 (4k random reads) and J7 (the 70/30 mix with a FLUSH
#    every 32 writes, what J8's burst runs), QD32, against ActorCache and nbdkit-memory, with the CPU
#    time of the server and of fio itself (they share the machine's cores), and for ActorCache the
#    blocks it destaged to the backing per request meanwhile (each one a log read and a backing write);
#  - CPU per MiB: J6 (1M sequential reads, QD8, data in the page cache) against ActorCache and nbdkit-file;
#  - J5 alone: cold 4k random reads (page cache dropped before each; needs root), ActorCache with every
#    block on the backing against nbdkit-file, twice each, alternating.
#  - commit (J9): one client writing 4k at queue depth 1 with a FLUSH after each, against ActorCache and
#    nbdkit-file: where a FLUSH's time goes, from the client's view and the server's (waking the flusher,
#    the log write, the fdatasync, the rest of the cache, and NBD/socket/reply outside it), each server's CPU
#    per commit, and the FLUSH p99; then what busy CPUs do to a plain fdatasync: 8 KiB appends + fdatasync
#    on a written file (the log's pattern, fio alone), by itself and beside two threads spinning in
#    sched_yield (what idle worker threads do) or one busy loop. On a virtual machine the disk is
#    emulated by the host, so guest CPUs that never idle slow its flushes.
#  - replicas (not in the default PARTS): the one disk that replication.sh's three nodes share. Each replica logs
#    every batch and, under protocol C, fdatasyncs for every FLUSH, each into its own log. With fio, one writer
#    alone against three at once (each on its own written file, as each node has its own log), rounds
#    alternating: 8 KiB appends + fdatasync (J2: a FLUSH after every write), and 1 MiB appends with an
#    fdatasync every 8 MiB (J3: a stream without FLUSH). What one writer gets beside two others is the most a
#    replicated volume can get of what an unreplicated one gets on this disk, whatever the CPUs do.
# Usage: tests/bench/bounds.sh   (RUNTIME=10 SIZE=1G; PARTS="disk cpu commit j5 replicas" to run only some). Needs fio, nbdkit, dotnet.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1G}
work=$(mktemp -d /tmp/actorcache-bounds.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

PARTS=${PARTS:-"disk cpu commit j5"}
want() { [[ " $PARTS " == *" $1 "* ]]; }

fio_value() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['jobs'][0]; print(eval(sys.argv[2]))" "$@"; }

if want disk; then
fio --name=disk --filename="$work/disk.img" --rw=write --bs=1M --size="$SIZE" --direct=1 --ioengine=psync \
  --output-format=json --output="$work/disk.json" >/dev/null
echo "disk: sequential 1M O_DIRECT write: $(fio_value "$work/disk.json" "round(d['write']['bw']/1024)") MiB/s"
fio --name=sync --filename="$work/disk.img" --rw=randwrite --bs=4k --size="$SIZE" --fdatasync=1 --ioengine=psync \
  --runtime="$RUNTIME" --time_based --output-format=json --output="$work/sync.json" >/dev/null
echo "disk: 4k write + fdatasync on a written file: $(fio_value "$work/sync.json" "round(d['write']['iops'])") per second," \
     "fdatasync mean $(fio_value "$work/sync.json" "round(d['sync']['lat_ns']['mean']/1000)") us"

rm -f "$work/fresh.img"; fallocate -l 512M "$work/fresh.img"
for kind in fresh disk; do
  fio --name=append --filename="$work/$kind.img" --rw=write --bs=64k --size=256M --fdatasync=1 --ioengine=psync \
    --output-format=json --output="$work/append.json" >/dev/null
  echo "disk: 64k append + fdatasync into a $([ $kind = fresh ] && echo "new fallocated" || echo "written") file:" \
       "$(fio_value "$work/append.json" "round(d['write']['iops'])") per second, fdatasync mean" \
       "$(fio_value "$work/append.json" "round(d['sync']['lat_ns']['mean']/1000)") us"
done
rm -f "$work/fresh.img"
fi

if want replicas; then
  for w in 1 2 3; do fio --name=fill --filename="$work/replica$w.img" --rw=write --bs=1M --size=512M --ioengine=psync --end_fsync=1 >/dev/null; done
  declare -A PATTERN=(
    [commits]="--rw=write --bs=8k --fdatasync=1"
    [stream]="--rw=write --bs=1M --fdatasync=8"
  )
  for pattern in commits stream; do
    : >"$work/replicas.tsv"
    for round in 1 2 3; do
      for writers in 1 3; do
        jobs=()
        for w in $(seq "$writers"); do jobs+=(--name="replica$w" --filename="$work/replica$w.img"); done
        # shellcheck disable=SC2086 # the pattern is several options
        fio ${PATTERN[$pattern]} --size=512M --ioengine=psync --runtime=5 --time_based "${jobs[@]}" \
          --output-format=json --output="$work/replicas.json" >/dev/null
        # writes per second per writer (of 1 MiB writes, also MiB/s)
        /usr/bin/python3 -c 'import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
print(sys.argv[2], sum(j["write"]["iops"] for j in jobs) / len(jobs), sep="\t")' \
          "$work/replicas.json" "$writers" >>"$work/replicas.tsv"
      done
    done
    /usr/bin/python3 - "$work/replicas.tsv" "$pattern" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
alone = [float(r[1]) for r in rows if r[0] == "1"]; three = [float(r[1]) for r in rows if r[0] == "3"]
ratios = sorted(t / a for a, t in zip(alone, three))
what, unit = {"commits": ("8k append + fdatasync", "commits/s"), "stream": ("1M appends, fdatasync every 8M", "MiB/s")}[sys.argv[2]]
print(f"replicas: {what}, each writer its own file: alone {statistics.median(alone):.0f} {unit}, each of three at once "
      f"{statistics.median(three):.0f} {unit} (the three {3 * statistics.median(three):.0f}): {statistics.median(ratios):.2f}x of alone"
      f" (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x)")
PY
  done
  rm -f "$work"/replica?.img
fi
want cpu || want commit || want j5 || exit 0 # the parts below need the servers

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
destaged() { curl -s "$(cat "$work/acdata/admin.url" 2>/dev/null)/metrics" 2>/dev/null | awk '/^actorcache_cache_blocks_destaged_total/ {print $2; f=1} END {if (!f) print 0}' | cut -d. -f1; }
hz=$(getconf CLK_TCK)
measure() { # job name uri server-pid fio-args...
  local job=$1 name=$2 uri=$3 pid=$4; shift 4
  fio --name=warm --ioengine=nbd --uri="$uri" --rw=read --bs=1M --iodepth=8 --size="$SIZE" >/dev/null 2>&1
  local destaged_before; destaged_before=$(destaged)
  local before; before=$(cpu_ticks "$pid")
  fio --name="$job" --ioengine=nbd --uri="$uri" "$@" --size="$SIZE" --runtime="$RUNTIME" --time_based \
    --output-format=json --output="$work/job.json" >/dev/null 2>&1
  local after; after=$(cpu_ticks "$pid")
  local destaged_after; destaged_after=$(destaged)
  /usr/bin/python3 - "$job" "$name" "$work/job.json" "$before" "$after" "$hz" "$((destaged_after - destaged_before))" <<'PY'
import json, sys
job, name, path, before, after, hz, destaged = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
d = json.load(open(path))["jobs"][0]
ios = d["read"]["total_ios"] + d["write"]["total_ios"]; secs = max(d["read"]["runtime"], d["write"]["runtime"]) / 1000
server = (after - before) / hz
fio_cpu = (d["usr_cpu"] + d["sys_cpu"]) / 100 * secs
mib = (d["read"]["io_bytes"] + d["write"]["io_bytes"]) / 2**20
print(f"{job} {name}: {ios/secs:.0f} IOPS, {mib/secs:.0f} MiB/s; server {server/secs*100:.0f}% CPU = {server/ios*1e6:.1f} us/request "
      f"= {server/mib*1e6:.0f} us/MiB; fio {fio_cpu/secs*100:.0f}% CPU = {fio_cpu/ios*1e6:.1f} us/request"
      + (f"; destaged {destaged/ios:.2f} blocks/request" if name == "actorcache" else ""))
PY
}

for name in ac kfile; do
  fio --name=fill --filename="$work/$name.img" --rw=write --bs=1M --size="$SIZE" --ioengine=psync --end_fsync=1 >/dev/null
done
dotnet build src/ActorCache -c Release -v quiet -nologo >/dev/null
dotnet src/ActorCache/bin/Release/net10.0/ActorCache.dll serve --data-dir "$work/acdata" --listen "unix:$work/ac.sock" --admin 127.0.0.1:0 --cluster 127.0.0.1:0 \
  --volume "bench:$SIZE:write-back:backing=$work/ac.img" >"$work/ac.log" 2>&1 & pids+=($!); ac=$!
nbdkit -f -U "$work/kmem.sock" memory "$SIZE" & pids+=($!); kmem=$!
nbdkit -f -U "$work/kfile.sock" file "$work/kfile.img" & pids+=($!); kfile=$!
for _ in $(seq 200); do grep -q "node serving" "$work/ac.log" && [ -S "$work/kmem.sock" ] && [ -S "$work/kfile.sock" ] && break; sleep 0.1; done
metric() { # name: the bench volume's value (summed over labels)
  curl -s "$(cat "$work/acdata/admin.url")/metrics" | awk -v m="$1" '$1 ~ "^"m"[{ ]" || $1 == m {s += $2} END {printf "%.9f\n", s}'
}
stage() { curl -s "$(cat "$work/acdata/admin.url")/metrics" | awk -v s="$1" '/^actorcache_log_commit_seconds_total/ && $0 ~ "stage=\""s"\"" {print $2}'; }
commit_breakdown() {
  local uri="nbd+unix:///bench?socket=$work/ac.sock" before after
  before="$(metric actorcache_log_commits_total) $(stage wake) $(stage write) $(stage sync) $(metric actorcache_cache_flushes_total) $(metric actorcache_cache_flush_seconds_total)"
  local ac0 ac1 k0 k1
  ac0=$(cpu_ticks "$ac")
  fio --name=j9 --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --size="$SIZE" --runtime="$RUNTIME" --time_based \
    --output-format=json --output="$work/j9.json" >/dev/null 2>&1
  ac1=$(cpu_ticks "$ac")
  after="$(metric actorcache_log_commits_total) $(stage wake) $(stage write) $(stage sync) $(metric actorcache_cache_flushes_total) $(metric actorcache_cache_flush_seconds_total)"
  k0=$(cpu_ticks "$kfile")
  fio --name=j9 --ioengine=nbd --uri="nbd+unix:///?socket=$work/kfile.sock" --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --size="$SIZE" \
    --runtime="$RUNTIME" --time_based --output-format=json --output="$work/j9k.json" >/dev/null 2>&1
  k1=$(cpu_ticks "$kfile")
  /usr/bin/python3 - "$work/j9.json" "$work/j9k.json" "$before" "$after" "$((ac1 - ac0))" "$((k1 - k0))" "$hz" <<'PY'
import json, sys
def client(path):
    d = json.load(open(path))["jobs"][0]
    return d["write"]["iops"], d["sync"]["lat_ns"]["mean"] / 1000, d["write"]["clat_ns"]["mean"] / 1000
b = [float(x) for x in sys.argv[3].split()]; a = [float(x) for x in sys.argv[4].split()]
commits, wake, write, sync, flushes, flush = (y - x for x, y in zip(b, a))
iops, flush_client, write_client = client(sys.argv[1])
kiops, kflush, kwrite = client(sys.argv[2])
us = lambda s, n: s / n * 1e6 if n else float("nan")
print(f"J9 actorcache: {iops:.0f} IOPS (nbdkit-file {kiops:.0f}, {iops / kiops:.2f}x); WRITE {write_client:.0f} us (nbdkit-file {kwrite:.0f}),"
      f" FLUSH {flush_client:.0f} us (nbdkit-file {kflush:.0f}) as the client sees them")
def tail(path):
    d = json.load(open(path))["jobs"][0]
    return d["sync"]["lat_ns"]["percentile"]["99.000000"] / 1000, d["write"]["total_ios"], d["write"]["runtime"] / 1000
hz = int(sys.argv[7])
(p99, ios, secs), (kp99, kios, ksecs) = tail(sys.argv[1]), tail(sys.argv[2])
print(f"J9 FLUSH p99: actorcache {p99:.0f} us, nbdkit-file {kp99:.0f} us; server CPU per write and FLUSH: actorcache"
      f" {int(sys.argv[5]) / hz / ios * 1e6:.0f} us ({int(sys.argv[5]) / hz / secs * 100:.0f}% of a core),"
      f" nbdkit-file {int(sys.argv[6]) / hz / kios * 1e6:.0f} us ({int(sys.argv[6]) / hz / ksecs * 100:.0f}% of a core)")
print(f"J9 actorcache FLUSH: {commits / flushes if flushes else 0:.2f} commits per FLUSH; per commit: flusher wake-up {us(wake, commits):.0f} us,"
      f" log write {us(write, commits):.0f} us, fdatasync {us(sync, commits):.0f} us; in the cache in all {us(flush, flushes):.0f} us per FLUSH"
      f" (so {us(flush, flushes) - us(wake + write + sync, commits):.0f} us handing it over and back);"
      f" outside the cache (NBD, socket, reply) {flush_client - us(flush, flushes):.0f} us")
PY
}
# The log's own pattern with fio alone: 8 KiB appends + fdatasync on a written file, beside what else keeps the CPUs busy.
flush_beside_busy_cpus() {
  fio --name=fill --filename="$work/busy.img" --rw=write --bs=1M --size=256M --ioengine=psync --end_fsync=1 >/dev/null
  local label busy=()
  for label in alone "beside 2 sched_yield spinners" "beside 1 busy loop" alone "beside 2 sched_yield spinners" "beside 1 busy loop"; do
    busy=()
    case $label in
      *spinners) for _ in 1 2; do /usr/bin/python3 -c 'import os
while True: os.sched_yield()' & busy+=($!); done ;;
      *"busy loop") sh -c 'while :; do :; done' & busy+=($!) ;;
    esac
    fio --name=append --filename="$work/busy.img" --rw=write --bs=8k --size=256M --fdatasync=1 --ioengine=psync --runtime=5 --time_based \
      --output-format=json --output="$work/busy.json" >/dev/null
    [ ${#busy[@]} -eq 0 ] || { kill "${busy[@]}"; wait "${busy[@]}" 2>/dev/null || true; }
    echo "disk: 8k append + fdatasync on a written file, $label: $(fio_value "$work/busy.json" "round(d['write']['iops'])") per second," \
         "fdatasync p50 $(fio_value "$work/busy.json" "round(d['sync']['lat_ns']['percentile']['50.000000']/1000)") us," \
         "p99 $(fio_value "$work/busy.json" "round(d['sync']['lat_ns']['percentile']['99.000000']/1000)") us," \
         "p99.9 $(fio_value "$work/busy.json" "round(d['sync']['lat_ns']['percentile']['99.900000']/1000)") us"
  done
  rm -f "$work/busy.img"
}
if want commit; then
  commit_breakdown
  flush_beside_busy_cpus
fi

declare -A RW=([J1]="--rw=randwrite" [J4]="--rw=randread" [J7]="--rw=randrw --rwmixread=70 --fsync=32")
if want cpu; then
  for job in J1 J4 J7; do
    measure $job actorcache "nbd+unix:///bench?socket=$work/ac.sock" "$ac" ${RW[$job]} --bs=4k --iodepth=32
    measure $job nbdkit-memory "nbd+unix:///?socket=$work/kmem.sock" "$kmem" ${RW[$job]} --bs=4k --iodepth=32
  done
  measure J6 actorcache "nbd+unix:///bench?socket=$work/ac.sock" "$ac" --rw=read --bs=1M --iodepth=8
  measure J6 nbdkit-file "nbd+unix:///?socket=$work/kfile.sock" "$kfile" --rw=read --bs=1M --iodepth=8
fi
if want j5; then for rep in 1 2; do
  for server in actorcache nbdkit-file; do
    [ $server = actorcache ] && uri="nbd+unix:///bench?socket=$work/ac.sock" || uri="nbd+unix:///?socket=$work/kfile.sock"
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "J5: cannot drop the page cache (not root)" >&2
    fio --name=j5 --ioengine=nbd --uri="$uri" --rw=randread --bs=4k --iodepth=32 --size="$SIZE" --runtime="$RUNTIME" --time_based \
      --output-format=json --output="$work/j5.json" >/dev/null 2>&1
    echo "J5 cold $server: $(fio_value "$work/j5.json" "round(d['read']['iops'])") IOPS"
  done
done; fi
