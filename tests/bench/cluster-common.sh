# Shared by the cluster bench scripts (replication.sh, restart-race.sh); sourced after they cd to the repository root.

# The ActorCache build to run, as an absolute path: $DLL (another build, for an A/B: run the script once per build),
# else a Release build of this tree made here.
bench_dll() {
  if [ -n "${DLL:-}" ]; then realpath "$DLL"; return; fi
  echo "building ActorCache (Release)..." >&2
  dotnet build src/ActorCache -c Release -v quiet -nologo >/dev/null
  realpath src/ActorCache/bin/Release/net10.0/ActorCache.dll
}

# N free loopback ports on one line: a cluster's seeds must be known before its nodes start, so no port 0 there.
free_ports() {
  /usr/bin/python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "$1"
}
