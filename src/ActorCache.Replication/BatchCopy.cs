using ActorCache.Cache;

namespace ActorCache.Replication;

/// <summary>
/// A large batch's bytes as they go on the wire behind a frame header (its header block, then its data blocks), copied out
/// of the ring once and shared by every link that ships the batch: with two peers, one copy instead of two, and half the
/// frame memory held until the peers have it durable. Each link sends its own frame header, then this. Reference-counted:
/// the batch that carries it (<see cref="LoggedBatch.SharedCopy"/>) holds one reference and every frame holding it one;
/// the last gives the memory back to <see cref="FrameBuffers"/>.
/// </summary>
/// <remarks>
/// The bytes are kept in chunks of one size (<see cref="ChunkBytes"/>) whatever the batch's size, so every copy draws
/// on the same idle buffers. With a buffer per batch, sized to it, batches of many sizes (J1's 256 KiB and more, J3's up
/// to 8 MiB) each needed their own size class, the idle budget filled with whichever came back first, and a fifth of the
/// rents in a J1 run missed and faulted in fresh pages (8% of the primary's CPU in a profile under protocol C).
/// </remarks>
internal sealed class BatchCopy : IBatchCopy
{
    private const int BlockSize = LogFormat.BlockSize;

    /// <summary>Bytes per chunk: a whole number of blocks, so no block is split across two.</summary>
    internal const int ChunkBytes = 128 << 10;

    private static readonly Stack<BatchCopy> Idle = new(); // the objects themselves, so a batch allocates nothing
    private const int IdleMax = 1024;

    private byte[][] _chunks = new byte[4][];
    private int _chunkCount;
    private int _references;

    public int Length { get; private set; }

    public int ChunkCount => _chunkCount;

    /// <summary>Chunk <paramref name="index"/> of the bytes, in send order.</summary>
    public ReadOnlyMemory<byte> Chunk(int index) => _chunks[index].AsMemory(0, Math.Min(ChunkBytes, Length - index * ChunkBytes));

    /// <summary>The batch's header block (as written to the log), at the start of the first chunk.</summary>
    public ReadOnlySpan<byte> HeaderBlock => _chunks[0].AsSpan(0, BlockSize);

    /// <summary>Copies made so far, and copies not yet given back, process-wide (tests: one per batch, however many links ship it; none left).</summary>
    internal static long Made, Live;

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
        Interlocked.Increment(ref Live);
        copy.CopyOf(batch);
        copy._references = 2; // the batch's and the caller's
        batch.SharedCopy = copy;
        return copy;
    }

    private void CopyOf(LoggedBatch batch)
    {
        Length = (int)batch.Header.SizeBytes;
        _chunkCount = (Length + ChunkBytes - 1) / ChunkBytes;
        if (_chunks.Length < _chunkCount) _chunks = new byte[Math.Max(_chunkCount, _chunks.Length * 2)][];
        for (var c = 0; c < _chunkCount; c++) _chunks[c] = FrameBuffers.Rent(ChunkBytes); // always the full size: one size class
        batch.HeaderBlock.CopyTo(_chunks[0]);
        const int blocksPerChunk = ChunkBytes / BlockSize;
        for (var i = 0; i < batch.Header.DataBlocks; i++)
        {
            var at = 1 + i; // the header block is block 0 of the copy
            batch.DataBlock(i).CopyTo(_chunks[at / blocksPerChunk].AsSpan(at % blocksPerChunk * BlockSize, BlockSize));
        }
    }

    public void Release()
    {
        var left = Interlocked.Decrement(ref _references);
        if (left > 0) return;
        if (left < 0) throw new InvalidOperationException("a shared batch copy was released more often than it was taken");
        for (var c = 0; c < _chunkCount; c++)
        {
            FrameBuffers.Return(_chunks[c]);
            _chunks[c] = null!;
        }
        _chunkCount = 0;
        Interlocked.Decrement(ref Live);
        lock (Idle)
            if (Idle.Count < IdleMax) Idle.Push(this);
    }
}
