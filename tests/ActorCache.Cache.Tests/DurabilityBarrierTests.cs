using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// Group commit waits on a durability barrier that more than the local fdatasync can join (DESIGN §4,
/// protocol C): a FLUSH completes only once every participant has its sync point durably, and a
/// participant that leaves no longer holds anyone up.
/// </summary>
public sealed class DurabilityBarrierTests : IDisposable
{
    private const long Size = 2 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>A stand-in peer: takes each batch as a replicator would and acknowledges it only when the test says so.</summary>
    private sealed class Peer(DurabilityBarrier.Participant participant) : ILogSubscriber
    {
        public long Received;

        public void OnBatch(LoggedBatch batch)
        {
            Interlocked.Exchange(ref Received, batch.Header.Sequence);
            batch.Release();
        }

        public void AcknowledgeReceived() => participant.Advance(Interlocked.Read(ref Received));

        /// <summary>Waits until the flusher has logged and published a batch: acknowledging before that acknowledges nothing.</summary>
        public async Task WaitForBatchAsync()
        {
            for (var waited = System.Diagnostics.Stopwatch.StartNew(); Interlocked.Read(ref Received) == 0; await Task.Delay(10))
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), "no batch reached the peer in 30 s");
        }
    }

    [Fact]
    public async Task A_flush_waits_for_every_participant_and_not_for_one_that_left()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options());
        var participant = cache.Barrier.Join("peer b", durableSequence: 0);
        var peer = new Peer(participant);
        using var subscription = cache.SubscribeBatches(peer);

        await cache.WriteAsync(0, CacheFixture.Pattern(8192, 1), fua: false);
        var flush = cache.FlushAsync().AsTask();
        await Task.Delay(500);
        Assert.False(flush.IsCompleted, "the FLUSH completed before the peer had the write");
        Assert.Equal(1, cache.Generation);

        await peer.WaitForBatchAsync(); // on a loaded machine the flusher may not have logged it within the 500 ms above
        Assert.False(flush.IsCompleted, "the FLUSH completed before the peer had the write");
        peer.AcknowledgeReceived();
        await flush.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, cache.Generation);

        // A FUA waits for the peer too; once the peer leaves, nothing waits for it.
        var fua = cache.WriteAsync(8192, CacheFixture.Pattern(4096, 2), fua: true).AsTask();
        await Task.Delay(300);
        Assert.False(fua.IsCompleted, "the FUA write completed before the peer had it");
        cache.Barrier.Leave(participant);
        await fua.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(3, cache.Generation);
    }

    [Fact]
    public async Task Waiters_complete_outside_the_lock_and_one_that_allows_it_on_the_thread_that_made_it_durable()
    {
        var barrier = new DurabilityBarrier(new LogHistory([]), lastClosedGeneration: 0, durableSequence: 0);
        var syncThread = 0;
        var continuedOn = new int[4];
        var tookTheLockAgain = new bool[4];
        var waits = new Task[4];
        for (var i = 0; i < 4; i++)
        {
            var n = i;
            // Three callers allow an inline completion (as the NBD front's FLUSH does), the fourth does not.
            Task wait;
            using (i < 3 ? InlineReply.Allow() : default) wait = barrier.WaitAsync(10 + i).AsTask();
            // ExecuteSynchronously: the continuation runs wherever the waiter is completed, as an awaiting FLUSH's does.
            waits[i] = wait.ContinueWith(_ =>
            {
                continuedOn[n] = Environment.CurrentManagedThreadId;
                // Another thread taking the barrier's lock would hang here if waiters were completed under it.
#pragma warning disable xUnit1031 // blocking on purpose: the continuation runs on the completing thread, as a FLUSH's reply does
                tookTheLockAgain[n] = Task.Run(() => barrier.HasWaiters).Wait(TimeSpan.FromSeconds(30)); // a hang never ends; a starved pool takes seconds
#pragma warning restore xUnit1031
            }, TaskContinuationOptions.ExecuteSynchronously);
        }
        var flusher = new Thread(() =>
        {
            syncThread = Environment.CurrentManagedThreadId;
            barrier.SyncPointWritten(20, new SyncPoint(1, 0, Sequence: 1, EndAddress: 8192));
            barrier.Local.Advance(1); // the fdatasync is done: the waiters complete
        });
        flusher.Start();
        flusher.Join();
        await Task.WhenAll(waits).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(tookTheLockAgain, Assert.True);
        Assert.Equal(1, continuedOn.Take(3).Count(t => t == syncThread)); // one in place (no thread hop before the reply), the others on the pool
        Assert.NotEqual(syncThread, continuedOn[3]); // a caller that did not allow it never continues on the flusher's thread
    }
    /// <summary>
    /// Waiters are pooled (a commit allocates nothing): each reuse gets its own outcome, a refusal reaches only the waits
    /// it refused, a FLUSH's time is reported once per timed wait, and a stale ValueTask read again fails loudly instead of
    /// taking the result of the wait now using its waiter.
    /// </summary>
    [Fact]
    public async Task A_reused_waiter_gives_each_wait_its_own_outcome()
    {
        var timed = 0;
        var barrier = new DurabilityBarrier(new LogHistory([]), lastClosedGeneration: 0, durableSequence: 0, flushTimed: _ => timed++);
        var sequence = 0L;
        void Close(long ticket)
        {
            sequence++;
            barrier.SyncPointWritten(ticket, new SyncPoint(sequence, 0, sequence, EndAddress: 4096 * sequence));
            barrier.Local.Advance(sequence);
        }

        for (var ticket = 1; ticket <= 1000; ticket++)
        {
            var wait = barrier.WaitAsync(ticket, arrived: ticket % 2 == 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : 0);
            Assert.False(wait.IsCompleted);
            Close(ticket);
            await wait;
        }
        Assert.Equal(500, timed);

        var first = barrier.WaitAsync(1001);
        Close(1001);
        await first;
        var second = barrier.WaitAsync(1002); // the same waiter again
        Assert.Throws<InvalidOperationException>(() => first.GetAwaiter().GetResult());
        Assert.False(second.IsCompleted, "reading the stale wait completed or recycled the current one");

        barrier.Refuse(new BlockTargetException(BlockError.Io, "the log failed"));
        var refused = await Assert.ThrowsAsync<BlockTargetException>(async () => await second);
        Assert.Equal("the log failed", refused.Message);
        await Assert.ThrowsAsync<BlockTargetException>(async () => await barrier.WaitAsync(1003));
        await barrier.WaitAsync(1001); // closed already: durable, whatever the log refuses now
        barrier.Accept();
        var after = barrier.WaitAsync(1003);
        Close(1003);
        await after.AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(barrier.HasWaiters);
    }

    /// <summary>
    /// A replicator advances its participant (or leaves) under its own lock. A FLUSH allowed inline whose continuation
    /// takes that lock, or another replicator's, would deadlock if it ran there: two links acknowledging at once each held
    /// their own lock and ran a FLUSH that wanted the other's (a primary of three replicas stopped under J2).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_waiter_allowed_inline_never_runs_on_a_peer_participant_advancing_or_leaving(bool leaves)
    {
        var barrier = new DurabilityBarrier(new LogHistory([]), lastClosedGeneration: 0, durableSequence: 0);
        var peer = barrier.Join("peer", 0);
        var replicatorLock = new object();
        Task wait;
        using (InlineReply.Allow()) wait = barrier.WaitAsync(10).AsTask();
        var ranUnderTheLock = true;
        var continued = wait.ContinueWith(_ => ranUnderTheLock = Monitor.IsEntered(replicatorLock), TaskContinuationOptions.ExecuteSynchronously);
        barrier.SyncPointWritten(10, new SyncPoint(1, 0, Sequence: 1, EndAddress: 8192));
        barrier.Local.Advance(1); // durable here; the waiter still waits for the peer
        Assert.False(wait.IsCompleted);
        lock (replicatorLock)
        {
            if (leaves) barrier.Leave(peer);
            else peer.Advance(1);
        }
        await continued.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(ranUnderTheLock, "the FLUSH's continuation ran on the replicator's thread, inside its lock");
    }
}
