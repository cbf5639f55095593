using System.Buffers;
using System.Numerics;

namespace ActorCache.Replication;

/// <summary>
/// Buffers for the frames links hold: batches, catch-up batches and resync runs of up to 1 MiB, each held until the peer has
/// it durable, so hundreds can be out at once. <see cref="ArrayPool{T}.Shared"/> keeps only a few arrays per size and core;
/// past those, every frame was a new large-object array, and the resync's read into it faulted in freshly zeroed pages (a
/// tenth of the primary's CPU in a resync). Here buffers from 64 KiB to 4 MiB (powers of two) are kept while idle, up to
/// <see cref="IdleBudget"/> bytes for the whole process: enough for what a peer's acknowledgement frees at once, which the
/// next frames take again. Smaller frames use the shared pool; larger ones are allocated and left to the GC.
/// </summary>
internal static class FrameBuffers
{
    private const int MinShift = 16, MaxShift = 22; // 64 KiB .. 4 MiB
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
        if (length < 1 << MinShift) return ArrayPool<byte>.Shared.Rent(length);
        var shift = BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)length));
        if (shift > MaxShift) return GC.AllocateUninitializedArray<byte>(length);
        lock (Gate)
        {
            if (Idle[shift - MinShift].TryPop(out var buffer))
            {
                _idleBytes -= buffer.Length;
                return buffer;
            }
        }
        return GC.AllocateUninitializedArray<byte>(1 << shift);
    }

    /// <summary>Gives back a buffer from <see cref="Rent"/>.</summary>
    public static void Return(byte[] buffer)
    {
        if (buffer.Length < 1 << MinShift)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return;
        }
        if (!BitOperations.IsPow2(buffer.Length) || buffer.Length > 1 << MaxShift) return; // allocated for one frame: the GC's
        lock (Gate)
        {
            if (_idleBytes + buffer.Length > IdleBudget) return;
            Idle[BitOperations.Log2((uint)buffer.Length) - MinShift].Push(buffer);
            _idleBytes += buffer.Length;
        }
    }
}
