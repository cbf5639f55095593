# Run under nbdsh (libnbd's Python shell) with strict mode off, so libnbd sends requests a
# well-behaved client never would; every one must get the error code the NBD spec calls for.
# Environment: RW_URI (a writable export), RO_URI (a read-only export).
import errno
import os

import nbd

failures = []


def connect(uri):
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    return h


def expect(code, what, fn):
    try:
        fn()
    except nbd.Error as e:
        # libnbd reports errno as its symbolic name; older bindings used the number.
        if e.errno not in (code, errno.errorcode[code]):
            failures.append(f"{what}: expected {errno.errorcode[code]}, got {e.errno} ({e.string})")
        else:
            print(f"ok   {what}: {errno.errorcode[code]}")
        return
    failures.append(f"{what}: expected {errno.errorcode[code]}, got success")


h = connect(os.environ["RW_URI"])
size = h.get_size()
assert h.can_multi_conn() and h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero()
assert h.can_fast_zero() and h.can_df() and h.can_cache()
assert h.get_block_size(nbd.SIZE_MINIMUM) == 512

expect(errno.EINVAL, "read past the end", lambda: h.pread(4096, size))
expect(errno.EINVAL, "read straddling the end", lambda: h.pread(8192, size - 4096))
expect(errno.ENOSPC, "write past the end", lambda: h.pwrite(b"x" * 4096, size))
expect(errno.ENOSPC, "write-zeroes past the end", lambda: h.zero(4096, size))
expect(errno.EINVAL, "trim past the end", lambda: h.trim(4096, size))
expect(errno.EINVAL, "misaligned read offset", lambda: h.pread(512, 1))
expect(errno.EINVAL, "misaligned read length", lambda: h.pread(100, 0))
expect(errno.EINVAL, "misaligned write", lambda: h.pwrite(b"y" * 512, 7))
expect(errno.EINVAL, "read over 32 MiB", lambda: h.pread(33 * 1024 * 1024, 0))
expect(errno.EINVAL, "write over 32 MiB", lambda: h.pwrite(b"z" * (33 * 1024 * 1024), 0))
expect(errno.EINVAL, "unknown command flag", lambda: h.pread(512, 0, flags=0x40))
# FUA is valid on every command (proto.md: the server MUST accept it, even by ignoring it); older qemu sets it on FLUSH.
h.flush(flags=nbd.CMD_FLAG_FUA)
h.pread(512, 0, flags=nbd.CMD_FLAG_FUA)
print("ok   FUA on flush and read: accepted")
expect(errno.EINVAL, "REQ_ONE on read", lambda: h.pread(512, 0, flags=nbd.CMD_FLAG_REQ_ONE))
expect(errno.EINVAL, "zero-length read", lambda: h.pread(0, 0))

# None of the refused writes touched the volume, and the connection still works.
assert h.pread(4096, 0) == bytes(4096), "a refused write reached the volume"
h.pwrite(b"\xab" * 4096, 8192, flags=nbd.CMD_FLAG_FUA)
assert h.pread(4096, 8192) == b"\xab" * 4096
h.zero(4096, 8192, flags=nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(4096, 8192) == bytes(4096)
h.flush()
h.shutdown()

r = connect(os.environ["RO_URI"])
assert r.is_read_only()
expect(errno.EPERM, "write to a read-only export", lambda: r.pwrite(b"w" * 512, 0))
expect(errno.EPERM, "trim on a read-only export", lambda: r.trim(512, 0))
expect(errno.EPERM, "write-zeroes on a read-only export", lambda: r.zero(512, 0))
r.pread(512, 0)
r.shutdown()

if failures:
    print("\n".join("FAIL " + f for f in failures))
    raise SystemExit(1)
print("all error codes as specified")
