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

        peer.AcknowledgeReceived();
        await flush.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(2, cache.Generation);

        // A FUA waits for the peer too; once the peer leaves, nothing waits for it.
        var fua = cache.WriteAsync(8192, CacheFixture.Pattern(4096, 2), fua: true).AsTask();
        await Task.Delay(300);
        Assert.False(fua.IsCompleted, "the FUA write completed before the peer had it");
        cache.Barrier.Leave(participant);
        await fua.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(3, cache.Generation);
    }
}
