#!/usr/bin/env bash
# Akka.Remote against a dedicated TCP connection for replication's data (issue: "measure Akka.Remote against a
# dedicated data connection per peer ... and choose with numbers"). Both ends in one process over loopback:
# bulk MiB/s with 16 batches in flight, each acknowledged, for 64 KiB and 1 MiB batches; then p50/p99 of one
# 4 KiB write and its acknowledgement, one at a time. Rounds alternate the two transports.
# Usage: tests/bench/transport.sh   (ROUNDS=3 BULK_MIB=1024 PINGS=5000)
set -euo pipefail
cd "$(dirname "$0")/../.."
dotnet build tests/ActorCache.TransportBench -c Release -v quiet -nologo >/dev/null
dotnet tests/ActorCache.TransportBench/bin/Release/net10.0/ActorCache.TransportBench.dll "${ROUNDS:-3}" "${BULK_MIB:-1024}" "${PINGS:-5000}" |
  /usr/bin/python3 -c '
import sys, statistics
rows = [r for r in (l.rstrip("\n").split("\t") for l in sys.stdin) if len(r) == 5][1:]
by = {}
for t, p, rate, p50, p99 in rows:
    by.setdefault((t, p), []).append((float(rate), float(p50), float(p99)))
print("| transport | batch | MiB/s (median) | 4 KiB round trip p50 (us) | p99 (us) |")
print("|---|---|---:|---:|---:|")
for (t, p), v in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"| {t} | {p} | {statistics.median(x[0] for x in v):.0f} | {statistics.median(x[1] for x in v):.0f} | {statistics.median(x[2] for x in v):.0f} |")
for p in sorted({p for _, p in by}):
    a, d = by.get(("akka.remote", p)), by.get(("tcp", p))
    if a and d:
        print(f"{p}: dedicated TCP {statistics.median(x[0] for x in d) / statistics.median(x[0] for x in a):.1f}x the throughput of Akka.Remote")
'
