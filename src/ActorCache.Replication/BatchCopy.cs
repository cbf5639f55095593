using ActorCache.Cache;

namespace ActorCache.Replication;

/// <summary>
/// A large batch's bytes as they go on the wire behind a frame header (its header block, then its data blocks), copied out
/// of the ring once and shared by every link that ships the batch: with two peers, one copy instead of two, and half the
/// frame memory held until the peers have it durable (in J1 under protocol C the per-peer copies, and the fresh pages
/// they faulted in once the idle buffers ran out, were a sixth of the primary's CPU). Each link sends its own frame header,
/// then this. Reference-counted: the batch that carries it (<see cref="LoggedBatch.SharedCopy"/>) holds one reference and
/// every frame holding it one; the last gives the buffer back to <see cref="FrameBuffers"/>.
/// </summary>
internal sealed class BatchCopy : IBatchCopy
{
    private const int BlockSize = LogFormat.BlockSize;
    private static readonly Stack<BatchCopy> Idle = new(); // the objects themselves, so a batch allocates nothing
    private const int IdleMax = 1024;

    private byte[] _buffer = [];
    private int _references;

    /// <summary>The batch's bytes: <see cref="Length"/> of them from the start.</summary>
    public ReadOnlyMemory<byte> Bytes => _buffer.AsMemory(0, Length);

    public int Length { get; private set; }

    /// <summary>Copies made so far, process-wide (tests: one per batch, however many links ship it).</summary>
    internal static long Made;

    /// <summary>The copy <paramref name="batch"/> carries for its subscribers, made now if no link has made it yet; one reference is the caller's.</summary>
    public static BatchCopy Share(LoggedBatch batch)
    {
        if (batch.SharedCopy is BatchCopy shared)
        {
            Interlocked.Increment(ref shared._references);
            return shared;
        }
        BatchCopy? copy;
        lock (Idle) Idle.TryPop(out copy);
        copy ??= new BatchCopy();
        Interlocked.Increment(ref Made);
        copy.Length = (int)batch.Header.SizeBytes;
        copy._buffer = FrameBuffers.Rent(copy.Length);
        batch.HeaderBlock.CopyTo(copy._buffer);
        for (var i = 0; i < batch.Header.DataBlocks; i++) batch.DataBlock(i).CopyTo(copy._buffer.AsSpan(BlockSize * (1 + i), BlockSize));
        copy._references = 2; // the batch's and the caller's
        batch.SharedCopy = copy;
        return copy;
    }

    public void Release()
    {
        var left = Interlocked.Decrement(ref _references);
        if (left > 0) return;
        if (left < 0) throw new InvalidOperationException("a shared batch copy was released more often than it was taken");
        FrameBuffers.Return(_buffer);
        _buffer = [];
        lock (Idle)
            if (Idle.Count < IdleMax) Idle.Push(this);
    }
}
