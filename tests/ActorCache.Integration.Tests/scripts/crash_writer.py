# Crash-test writer: random multi-block writes over two NBD connections with FLUSH and FUA mixed in,
# until the server dies. Every block written carries (block, version, run) and a CRC, so a reader can
# tell which write it came from and whether it is torn. The journal records, in order:
#   I first count version   issued (may or may not land)
#   A first count version   acknowledged
#   F version               a FLUSH completed: every write acknowledged before it is durable
#   D first count version   a FUA write completed: it is durable
# Usage: python3 crash_writer.py URI JOURNAL RUN BLOCKS FIRST_VERSION
import random
import struct
import sys
import zlib

import nbd

uri, journal_path, run, blocks, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(run)


def content(block, ver):
    filler = random.Random(ver * 1_000_003 + block).randbytes(4096 - 24 - 4)
    body = struct.pack("<QQQ", block, ver, run) + filler
    return body + struct.pack("<I", zlib.crc32(body))


connections = []
for _ in range(2):
    h = nbd.NBD()
    h.connect_uri(uri)
    connections.append(h)

with open(journal_path, "w", buffering=1) as journal:
    try:
        while True:
            h = rng.choice(connections)
            count = rng.randint(1, 8)
            first = rng.randrange(0, blocks - count)
            version += 1
            fua = rng.random() < 0.1
            data = b"".join(content(first + i, version) for i in range(count))
            journal.write(f"I {first} {count} {version}\n")
            h.pwrite(data, first * 4096, nbd.CMD_FLAG_FUA if fua else 0)
            journal.write(f"A {first} {count} {version}\n")
            if fua:
                journal.write(f"D {first} {count} {version}\n")
            if rng.random() < 0.05:
                # A FLUSH on either connection covers writes acknowledged on both.
                rng.choice(connections).flush()
                journal.write(f"F {version}\n")
    except nbd.Error as e:
        print(f"server went away after version {version}: {e}", file=sys.stderr)
