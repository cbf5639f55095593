#!/usr/bin/env bash
# Scaling with history (issue 16), measured on this build and, with BASE=path/to/ActorCache.dll, on another:
#   open time against retained log size: a volume of VOLUME (8G) gets SIZES GiB (1 4 8) of 4 KiB random
#     writes at queue depth 32 (small batches, as in the issue), a FLUSH, then is reopened three ways:
#     kill -9 with the log in the page cache (crash, warm), kill -9 then the page cache dropped (crash,
#     cold), and a clean stop then the page cache dropped (clean, cold). "open" is from exec until
#     nbdinfo is served the volume; "replay" is what the node's log line says the replay took.
#   index bytes per cached block against density: 262,144 blocks written to a 1 TiB volume dense (the
#     first 1 GiB), every 8th block, every 1000th block, and at random over the whole volume; then
#     actorcache_cache_index_bytes / actorcache_cache_cached_blocks from /metrics.
# Usage: tests/bench/scale.sh                 (SIZES="1 4 8" VOLUME=8G; BASE=... adds the other build)
#        PARTS="open index" to choose. Dropping the page cache needs root.
# Needs: fio (nbd engine), nbdinfo, curl, python3, dotnet; SIZES' sum x 2 of free disk.
set -Eeuo pipefail
trap 'echo "scale.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"1 4 8"}
VOLUME=${VOLUME:-8G}
PARTS=${PARTS:-"open index"}
work=$(mktemp -d /tmp/actorcache-scale.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

echo "building ActorCache (Release)..." >&2
dotnet build src/ActorCache -c Release -v quiet -nologo >/dev/null
builds=("new=$PWD/src/ActorCache/bin/Release/net10.0/ActorCache.dll")
[ -n "${BASE:-}" ] && builds+=("base=$(realpath "$BASE")")

sock=$work/ac.sock
uri="nbd+unix:///bench?socket=$sock"
start_node() { # dll data-dir volume-spec [--set ...]
  local dll=$1 dir=$2 spec=$3; shift 3
  rm -f "$sock"
  dotnet "$dll" serve --data-dir "$dir" --listen "unix:$sock" --admin 127.0.0.1:0 --volume "$spec" "$@" >>"$work/node.log" 2>&1 &
  pid=$!
}
wait_served() { # prints seconds since $1 (epoch ns) until nbdinfo is served the volume
  local t0=$1
  for _ in $(seq 6000); do
    if [ -S "$sock" ] && nbdinfo --size "$uri" >/dev/null 2>&1; then
      /usr/bin/python3 -c "import time; print(f'{(time.time_ns()-$t0)/1e9:.2f}')"
      return
    fi
    kill -0 "$pid" 2>/dev/null || { echo "died"; return; }
    sleep 0.05
  done
  echo "timeout"
}
wait_admin() { local dir=$1; for _ in $(seq 600); do [ -s "$dir/admin.url" ] && break; sleep 0.1; done; admin=$(cat "$dir/admin.url"); }
metric() { curl -s "$admin/metrics" | awk -v m="$1{volume=\"bench\"}" '$1 == m {printf "%.0f\n", $2}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
replay_line() { { grep -a "volume bench: .*replayed" "$work/node.log" || true; } | tail -1 | sed -E 's/.*volume bench: //'; }
seconds_of() { sed -nE 's/.* in ([0-9.]+)s.*/\1/p' <<<"$1"; }
reopen() { # dll dir how(crash|clean) cache(warm|cold); sets reopened="open replay | line" (no subshell: it keeps $pid)
  local dll=$1 dir=$2 how=$3 cache=$4
  if [ -z "$pid" ] && [ "$how" = clean ]; then reopened="n/a - | the start before failed: no node to stop cleanly"; return; fi
  if [ -n "$pid" ]; then
    if [ "$how" = crash ]; then kill -9 "$pid"; else kill -TERM "$pid"; fi
    wait "$pid" 2>/dev/null || true; pid=
  fi
  [ "$cache" = cold ] && drop_caches
  : >"$work/node.log"
  local t0; t0=$(date +%s%N)
  start_node "$dll" "$dir" "bench:$VOLUME:write-back" "${opts[@]}"
  local open; open=$(wait_served "$t0")
  local line; line=$(replay_line)
  if [ "$open" = died ] || [ "$open" = timeout ]; then
    # The build before this one gives up on an open that takes over 30 s: the start fails.
    reopened="$open - | $(grep -a -E "cannot start|error|fail" "$work/node.log" | tail -1 | cut -c1-200)"
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; return
  fi
  reopened="$open ${line:+$(seconds_of "$line")} | ${line:-no replay line}"
}

results=$work/results
: >"$results"
for build in "${builds[@]}"; do
  name=${build%%=*}; dll=${build#*=}
  if [[ " $PARTS " == *" open "* ]]; then
    for size in $SIZES; do
      dir=$work/open-$name-$size
      # Retention keeps everything written (an hour, and a log with room for it): the history to replay.
      opts=(--set "actorcache.cache.log-capacity=$((size * 2 + 4))G" --set actorcache.cache.retention-time=1h)
      : >"$work/node.log"
      t0=$(date +%s%N)
      start_node "$dll" "$dir" "bench:$VOLUME:write-back" "${opts[@]}"
      fresh=$(wait_served "$t0")
      echo "open|$name|$size|0|0|fresh|warm|$fresh - | an empty log: the node's own start" | tee -a "$results" >&2
      wait_admin "$dir"
      echo "$name: writing ${size}G of 4 KiB random writes (QD32) into a $VOLUME volume..." >&2
      fio --name=fill --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32 --size="$VOLUME" --io_size="${size}g" \
        --end_fsync=1 --randrepeat=0 >/dev/null 2>&1
      logbytes=$(metric actorcache_log_bytes)
      batches=$(metric actorcache_log_batches_written_total)
      for case in "crash warm" "crash cold" "clean cold"; do
        set -- $case
        reopen "$dll" "$dir" "$1" "$2"
        echo "open|$name|$size|$logbytes|$batches|$1|$2|$reopened" | tee -a "$results" >&2
      done
      [ -n "$pid" ] && { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
      rm -rf "$dir"
    done
  fi
  if [[ " $PARTS " == *" index "* ]]; then
    for density in dense 8 1000 random; do
      dir=$work/index-$name-$density
      opts=(--set actorcache.cache.log-capacity=8G --set actorcache.cache.retention-time=1h)
      : >"$work/node.log"
      start_node "$dll" "$dir" "bench:1T:write-back" "${opts[@]}"
      wait_served "$(date +%s%N)" >/dev/null
      wait_admin "$dir"
      case $density in
        dense) job=(--rw=write --size=1g) ;;
        random) job=(--rw=randwrite --size=1t --io_size=1g --randrepeat=0) ;;
        *) job=(--rw="write:$(( (density - 1) * 4 ))k" --size=1t --io_size=1g) ;;
      esac
      fio --name=fill --ioengine=nbd --uri="$uri" --bs=4k --iodepth=32 "${job[@]}" --end_fsync=1 >/dev/null 2>&1
      bytes=$(metric actorcache_cache_index_bytes)
      blocks=$(metric actorcache_cache_cached_blocks)
      echo "index|$name|$density|$bytes|$blocks" | tee -a "$results" >&2
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
      rm -rf "$dir"
    done
  fi
done

echo
if grep -q '^open' "$results"; then
  echo "| build | log written | log bytes | batches | reopened after | page cache | open (s) | replay (s) | node's replay line |"
  echo "|---|---:|---:|---:|---|---|---:|---:|---|"
  awk -F'|' '$1 == "open" { split($8, t, " ");
    printf "| %s | %s GiB | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, t[1], (t[2] == "" ? "-" : t[2]), $9 }' "$results"
  echo
fi
if grep -q '^index' "$results"; then
  echo "| build | density | cached blocks | index bytes | bytes per cached block |"
  echo "|---|---|---:|---:|---:|"
  awk -F'|' '$1 == "index" { d = ($3 == "dense" || $3 == "random") ? $3 : "1/" $3; printf "| %s | %s | %d | %d | %.2f |\n", $2, d, $5, $4, ($5 > 0 ? $4 / $5 : 0) }' "$results"
fi
