using System.Buffers;
using System.Numerics;

namespace ActorCache.Replication;

/// <summary>
/// Buffers for the frames links hold: batches, catch-up batches and resync runs of up to 1 MiB, each held until the peer has
/// it durable, so hundreds can be out at once. Past the few arrays <see cref="ArrayPool{T}.Shared"/> kept, every frame was a
/// new large-object array, and the resync's read into it faulted in freshly zeroed pages (a tenth of the primary's CPU in a
/// resync). Here idle buffers are kept, up to <see cref="IdleBudget"/> bytes for the whole process (never trimmed below it):
/// enough for what a peer's acknowledgement frees at once, which the next frames take again. When the budget is full, a
/// buffer given back pushes out idle ones of other sizes: the pool follows what is in use. A frame is its 32-byte header
/// and whole 4 KiB blocks, so the sizes kept are 2^k + 4 KiB (64 KiB to 8 MiB of blocks, a batch of the default max-batch): a 1 MiB resync run fits one of
/// 1 MiB + 4 KiB, not 2 MiB. Smaller frames use the shared pool; larger ones are allocated and left to the GC.
/// </summary>
internal static class FrameBuffers
{
    private const int MinShift = 16, MaxShift = 23; // 64 KiB .. 8 MiB, plus Slack
    private const int Slack = 4096;                  // room for the frame header beyond whole blocks
    private static readonly Stack<byte[]>[] Idle = [.. Enumerable.Range(0, MaxShift - MinShift + 1).Select(_ => new Stack<byte[]>())];
    private static readonly Lock Gate = new();
    private static long _idleBytes; // under Gate

    /// <summary>Bytes of idle buffers kept at most (process-wide).</summary>
    public const long IdleBudget = 64L << 20;

    /// <summary>Idle bytes kept now (tests).</summary>
    internal static long IdleBytes
    {
        get
        {
            lock (Gate) return _idleBytes;
        }
    }

    /// <summary>Drops every idle buffer (tests start from an empty pool).</summary>
    internal static void DropIdle()
    {
        lock (Gate)
        {
            foreach (var stack in Idle) stack.Clear();
            _idleBytes = 0;
        }
    }

    /// <summary>A buffer of at least <paramref name="length"/> bytes, contents undefined.</summary>
    public static byte[] Rent(int length)
    {
        if (length <= 1 << MinShift) return ArrayPool<byte>.Shared.Rent(length);
        var shift = Math.Max(MinShift, BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)(length - Slack))));
        if (shift > MaxShift) return GC.AllocateUninitializedArray<byte>(length);
        lock (Gate)
        {
            if (Idle[shift - MinShift].TryPop(out var buffer))
            {
                _idleBytes -= buffer.Length;
                return buffer;
            }
        }
        return GC.AllocateUninitializedArray<byte>((1 << shift) + Slack);
    }

    /// <summary>Gives back a buffer from <see cref="Rent"/>.</summary>
    public static void Return(byte[] buffer)
    {
        if (buffer.Length <= 1 << MinShift)
        {
            ArrayPool<byte>.Shared.Return(buffer); // the shared pool's (a power of two)
            return;
        }
        var blocks = buffer.Length - Slack;
        if (blocks <= 0 || !BitOperations.IsPow2(blocks) || blocks < 1 << MinShift || blocks > 1 << MaxShift) return; // one frame's own: the GC's
        var size = BitOperations.Log2((uint)blocks) - MinShift;
        lock (Gate)
        {
            // The size just given back is the one in use: idle buffers of other sizes make room for it (a resync's 1 MiB runs
            // kept after it ended would otherwise hold the whole budget while the batches' chunks miss and fault in fresh pages).
            while (_idleBytes + buffer.Length > IdleBudget && DropIdleOtherThan(size))
            {
            }
            if (_idleBytes + buffer.Length > IdleBudget) return;
            Idle[size].Push(buffer);
            _idleBytes += buffer.Length;
        }
    }

    /// <summary>Drops one idle buffer of another size than <paramref name="size"/>, the largest first; false when there is none.</summary>
    private static bool DropIdleOtherThan(int size)
    {
        for (var other = Idle.Length - 1; other >= 0; other--)
        {
            if (other == size || !Idle[other].TryPop(out var dropped)) continue;
            _idleBytes -= dropped.Length;
            return true;
        }
        return false;
    }
}
