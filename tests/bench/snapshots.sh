#!/usr/bin/env bash
# Snapshots after the fact, measured (issue 12's targets), on one node of this build:
#   S1  creating a snapshot at a random past generation of a full 1 GiB log: median and worst latency
#   S2  J1 (4k random writes, QD32) while 100 snapshots are created, vs J1 alone
#   S3  J4 (4k random reads, QD32) from a snapshot export vs the same reads of the live volume
#   S4  J1 with 10 kept snapshots behind the destage horizon (copy-on-write at every destage) vs none
#   S5  memory: index bytes per cached block, and process memory per kept snapshot (1,000 of them)
# Ratios are medians of REPS alternating runs; these machines are shared, so read ratios, not times.
# Usage: tests/bench/snapshots.sh            (REPS=3 RUNTIME=10 to change)
# Needs: fio, curl, python3 (Debian's), dotnet.
set -Eeuo pipefail
trap 'echo "snapshots.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
work=$(mktemp -d /tmp/actorcache-snapbench.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

echo "building ActorCache (Release)..." >&2
dotnet build src/ActorCache -c Release -v quiet -nologo >/dev/null
dll=src/ActorCache/bin/Release/net10.0/ActorCache.dll

start_node() { # data-dir, extra --set arguments follow
  local dir=$1; shift
  dotnet "$dll" serve --data-dir "$dir" --listen "unix:$work/ac.sock" --admin 127.0.0.1:0 --cluster 127.0.0.1:0 \
    --volume "bench:1G:write-back" "$@" >"$work/node.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q "node serving" "$work/node.log" 2>/dev/null && [ -s "$dir/admin.url" ] && break; sleep 0.1; done
  [ -s "$dir/admin.url" ] || { cat "$work/node.log" >&2; exit 1; }
  admin=$(cat "$dir/admin.url")
  token=$(cat "$dir/admin.token")
}
stop_node() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
uri() { echo "nbd+unix:///$1?socket=$work/ac.sock"; }
snapshot() { # name [json fields...]: prints the request's seconds
  curl -s -o "$work/snap.out" -w '%{time_total}\n' -X POST -H "Authorization: Bearer $token" \
    -d "{\"volumes\": [\"bench\"], \"name\": \"$1\"${2:+, $2}}" "$admin/api/snapshots"
  grep -q '"export"' "$work/snap.out" || { echo "snapshot $1 failed: $(cat "$work/snap.out")" >&2; exit 1; }
}
fio_iops() { # job-spec uri runtime
  fio --name=b --ioengine=nbd --uri="$2" $1 --size=1G --runtime="$3" --time_based --output-format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; t=sys.stdin.read(); d=json.loads(t[t.index("{"):])["jobs"][0]; print(round(d["write"]["iops"]+d["read"]["iops"]))'
}
J1="--rw=randwrite --bs=4k --iodepth=32"
J4="--rw=randread --bs=4k --iodepth=32"
median() { /usr/bin/python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
ratio() { /usr/bin/python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}x")' "$1" "$2"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

# ---- S1, S2, S3: one node whose log holds 1 GiB of history (retention is an hour: nothing destaged) ----
start_node "$work/a"
echo "filling the log: 1 GiB in 1 MiB writes, a FLUSH every 8 MiB..." >&2
fio --name=fill --ioengine=nbd --uri="$(uri bench)" --rw=write --bs=1M --iodepth=8 --size=1G --fsync=8 >/dev/null 2>&1
generations=$(curl -s "$admin/api/volumes/bench/history" | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(p["generation"]) for p in json.load(sys.stdin)))')
count=$(wc -w <<<"$generations")
echo "the log covers $count restorable points" >&2
s1=()
for i in $(seq 20); do
  g=$(tr ' ' '\n' <<<"$generations" | shuf -n 1)
  s1+=("$(snapshot "past$i" "\"generation\": $g")")
done
s1_median=$(median "${s1[@]}")
s1_max=$(printf '%s\n' "${s1[@]}" | sort -g | tail -1)

s2_alone=(); s2_during=()
for rep in $(seq "$REPS"); do
  s2_alone+=("$(fio_iops "$J1" "$(uri bench)" "$RUNTIME")")
  ( for i in $(seq 100); do snapshot "r${rep}n$i" >/dev/null; sleep "$(/usr/bin/python3 -c "print($RUNTIME/110)")"; done ) &
  creator=$!
  s2_during+=("$(fio_iops "$J1" "$(uri bench)" "$RUNTIME")")
  wait "$creator"
done

# The S2 writes wrapped the log and may have expired the oldest snapshots (snapshot-space): read a new one,
# taken after them, whose blocks are spread over the log, the backing and the preserved copies by now.
snapshot reads >/dev/null
fio --name=warm --ioengine=nbd --uri="$(uri bench@reads)" --rw=read --bs=1M --iodepth=8 --size=1G >/dev/null 2>&1
fio --name=warm --ioengine=nbd --uri="$(uri bench)" --rw=read --bs=1M --iodepth=8 --size=1G >/dev/null 2>&1
s3_live=(); s3_snap=()
for rep in $(seq "$REPS"); do
  s3_live+=("$(fio_iops "$J4" "$(uri bench)" "$RUNTIME")")
  s3_snap+=("$(fio_iops "$J4" "$(uri bench@reads)" "$RUNTIME")")
done

# S5: memory per kept snapshot: 1,000 more of them on this node.
cached=$(curl -s "$admin/metrics" | awk '/^actorcache_cache_cached_blocks\{volume="bench"\}/ {print $2}')
index=$(curl -s "$admin/metrics" | awk '/^actorcache_cache_index_bytes\{volume="bench"\}/ {print $2}')
before=$(rss_kib)
for i in $(seq 1000); do snapshot "m$i" >/dev/null; done
after=$(rss_kib)
stop_node

# ---- S4: J1 while the destager runs all the time (retention 0s): with 10 kept snapshots behind it, and with none ----
s4_none=(); s4_kept=()
for rep in $(seq "$REPS"); do
  rm -rf "$work/b" "$work/c"
  start_node "$work/b" --set actorcache.cache.retention-time=0s
  fio --name=fill --ioengine=nbd --uri="$(uri bench)" --rw=write --bs=1M --iodepth=8 --size=1G --fsync=64 >/dev/null 2>&1
  s4_none+=("$(fio_iops "$J1" "$(uri bench)" "$RUNTIME")")
  stop_node
  start_node "$work/c" --set actorcache.cache.retention-time=0s
  fio --name=fill --ioengine=nbd --uri="$(uri bench)" --rw=write --bs=1M --iodepth=8 --size=1G --fsync=64 >/dev/null 2>&1
  for i in $(seq 10); do
    fio --name=churn --ioengine=nbd --uri="$(uri bench)" --rw=randwrite --bs=64k --iodepth=8 --size=1G --io_size=32M --fsync=16 >/dev/null 2>&1
    snapshot "k$i" >/dev/null
  done
  s4_kept+=("$(fio_iops "$J1" "$(uri bench)" "$RUNTIME")")
  preserved=$(curl -s "$admin/metrics" | awk '/^actorcache_snapshot_preserved_blocks\{volume="bench"\}/ {print $2}')
  stop_node
done

/usr/bin/python3 - <<PY
print("| measure | result | target |")
print("|---|---:|---:|")
print(f"| S1 snapshot create at a past generation of a 1 GiB log ($count points), median / worst of 20 | {float('$s1_median')*1000:.0f} ms / {float('$s1_max')*1000:.0f} ms | <= 100 ms |")
print(f"| S2 J1 during 100 snapshot creations vs J1 alone ({$(median "${s2_during[@]}"):.0f} vs {$(median "${s2_alone[@]}"):.0f} IOPS) | $(ratio "$(median "${s2_during[@]}")" "$(median "${s2_alone[@]}")") | >= 0.9x |")
print(f"| S3 J4 from a snapshot export vs the live volume ({$(median "${s3_snap[@]}"):.0f} vs {$(median "${s3_live[@]}"):.0f} IOPS) | $(ratio "$(median "${s3_snap[@]}")" "$(median "${s3_live[@]}")") | >= 0.8x |")
print(f"| S4 J1 with 10 kept snapshots behind the horizon vs none ({$(median "${s4_kept[@]}"):.0f} vs {$(median "${s4_none[@]}"):.0f} IOPS; {int('${preserved:-0}' or 0)} blocks preserved) | $(ratio "$(median "${s4_kept[@]}")" "$(median "${s4_none[@]}")") | >= 0.7x |")
print(f"| S5 index bytes per cached block ({int(float('$index'))} bytes for {int(float('$cached'))} blocks) | {float('$index')/max(float('$cached'),1):.2f} B | bounded |")
print(f"| S5 process memory per kept snapshot (RSS {int('$before')//1024} MiB -> {int('$after')//1024} MiB over 1,000 snapshots) | {(int('$after')-int('$before'))*1024/1000:.0f} B | bounded |")
PY
