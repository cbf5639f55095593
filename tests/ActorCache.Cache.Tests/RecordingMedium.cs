namespace ActorCache.Cache.Tests;

/// <summary>
/// Sits under the log like Linux dm-log-writes: passes every write and sync to the real medium and
/// keeps a copy of each, so a test can rebuild the log as a power cut would have left it at any sync point.
/// </summary>
internal sealed class RecordingMedium(ILogMedium inner) : ILogMedium
{
    public sealed record Op(long Address, byte[]? Data); // Data null: a sync

    public List<Op> Ops { get; } = [];
    public int SyncCount { get; private set; }
    public Action? OnSync { get; set; }

    public long SegmentSize => inner.SegmentSize;
    public IReadOnlyList<long> Segments => inner.Segments;

    public void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
    {
        inner.Write(address, buffers);
        var data = new byte[buffers.Sum(b => b.Length)];
        var at = 0;
        foreach (var buffer in buffers)
        {
            buffer.Span.CopyTo(data.AsSpan(at));
            at += buffer.Length;
        }
        lock (Ops) Ops.Add(new Op(address, data));
    }

    public void PrepareAhead(long tail) => inner.PrepareAhead(tail); // its zeroes go past the tail, where no record is

    public void Sync()
    {
        inner.Sync();
        lock (Ops)
        {
            Ops.Add(new Op(0, null));
            SyncCount++;
        }
        OnSync?.Invoke();
    }

    public bool TryRead(long address, Span<byte> destination) => inner.TryRead(address, destination);
    public void Discard(long address, long length) => inner.Discard(address, length);
    public void Release(long segment) => inner.Release(segment);
    public void Dispose() => inner.Dispose();

    /// <summary>
    /// Writes into <paramref name="target"/> what survives a power cut right after sync number
    /// <paramref name="syncs"/>: every write before it, nothing after it except the first 512-byte
    /// sectors of the next write (torn).
    /// </summary>
    public void BuildCrashImage(ILogMedium target, int syncs, int tornSectors)
    {
        var seen = 0;
        List<Op> ops;
        lock (Ops) ops = [.. Ops];
        foreach (var op in ops)
        {
            if (op.Data is null)
            {
                if (++seen == syncs) target.Sync();
                continue;
            }
            if (seen < syncs) target.Write(op.Address, [op.Data]);
            else
            {
                var torn = Math.Min(op.Data.Length, tornSectors * 512);
                if (torn > 0) target.Write(op.Address, [op.Data.AsMemory(0, torn)]);
                target.Sync();
                return;
            }
        }
        target.Sync();
    }
}
