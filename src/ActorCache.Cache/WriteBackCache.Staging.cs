using System.Buffers;
using System.Runtime.CompilerServices;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Staged writes (DESIGN §3: "the NBD handler copies a WRITE's payload from the socket straight into
/// slots"): whole-block writes claim their ring slots before the payload is received, the front
/// receives into them, and the commit only points the index at them and queues them for the flusher.
/// Partial-block writes still go through <see cref="WriteAsync"/>, which merges them with the old block.
/// </summary>
public sealed partial class WriteBackCache
{
    public async ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default)
    {
        if (_mode != CacheMode.WriteBack || length == 0 || ((offset | (long)length) & (BlockSize - 1)) != 0) return false;
        ThrowIfReadOnly();
        var count = length >> BlockShift;
        staged.Begin(this, offset, length, count);
        var deadline = DateTime.UtcNow + _options.RingWaitTimeout;
        var attempt = 0;
        try
        {
            while (true)
            {
                ThrowIfLogRefusesWrites();
                var space = attempt++ == 0 ? null : _ring.SpaceFreed;
                if (_ring.TryClaim(staged.Tokens)) break;
                WakeFlusher();
                if (space is not null) await WaitForRingSpaceAsync(space, deadline, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            staged.Clear(); // nothing was claimed
            throw;
        }
        // Slots freed together come back in order, so a write usually gets a few long runs: few receives.
        var slots = staged.Tokens;
        var runStart = 0;
        for (var i = 1; i <= slots.Length; i++)
        {
            if (i < slots.Length && slots[i] == slots[i - 1] + 1) continue;
            staged.AddSegment(_ring.SlotRun(slots[runStart], i - runStart));
            runStart = i;
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))] // it waits only when an extent is busy elsewhere; that should not allocate either
    public async ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        var first = staged.Offset >> BlockShift;
        var count = staged.TokenCount;
        long ticket = 0;
        IndexWrite? sent = null;
        try
        {
            while (true)
            {
                if (_mode == CacheMode.WriteBack) await EnsureExtentsAsync(first, count).ConfigureAwait(false);
                lock (_append)
                {
                    // Log order is commit order, as for every other write.
                    if (_mode == CacheMode.WriteBack)
                    {
                        if (!ExtentsReadyLocked(first, count, partialEnds: false, out _)) continue; // an extent was retired meanwhile
                        ticket = QueueLocked(first, count, LogEntryType.Data, staged.Tokens);
                        var entries = EntriesScratchLocked(count);
                        for (var i = 0; i < count; i++) entries[i] = BlockIndex.Encode(BlockLocation.Ring, staged.Tokens[i]);
                        sent = SendIndexWriteLocked(first, entries);
                    }
                }
                break;
            }
        }
        catch when (sent is null && ticket == 0)
        {
            AbandonStagedWrite(staged); // not queued (the volume is closing): its slots go back to the node's ring
            throw;
        }
        if (sent is null)
        {
            await WriteStagedThroughAsync(staged, fua, cancellationToken).ConfigureAwait(false);
            return;
        }
        staged.Clear();
        WakeFlusher();
        if (!sent.IsCompleted) await sent.AsValueTask().ConfigureAwait(false); // an extent was busy on another thread
        FinishIndexWrite(sent);
        if (fua) await WaitDurableAsync(ticket).ConfigureAwait(false);
    }

    public void AbandonStagedWrite(StagedWrite staged)
    {
        foreach (var slot in staged.Tokens) _ring.Release(slot);
        staged.Clear();
    }

    /// <summary>The volume left write-back while the payload was arriving: the write goes to the backing like any write-through write.</summary>
    private async ValueTask WriteStagedThroughAsync(StagedWrite staged, bool fua, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(staged.Length);
        try
        {
            var filled = 0;
            for (var i = 0; i < staged.SegmentCount; i++)
            {
                staged.Segment(i).Span.CopyTo(buffer.AsSpan(filled));
                filled += staged.Segment(i).Length;
            }
            await _backing.WriteAsync(staged.Offset, buffer.AsMemory(0, staged.Length), fua || _mode == CacheMode.WriteThrough, ct).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            AbandonStagedWrite(staged);
        }
    }
}
