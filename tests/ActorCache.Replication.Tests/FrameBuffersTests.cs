namespace ActorCache.Replication.Tests;

/// <summary>
/// Frame buffers are reused, not allocated per frame: a resync keeps hundreds of 1 MiB runs out at once, and a new array for
/// each cost the primary a tenth of its CPU in page faults. The pool is process-wide, so these tests run alone, from an empty pool.
/// </summary>
[Collection(Name)]
public sealed class FrameBuffersTests
{
    public const string Name = "frame buffers";
    private const int Large = 3 << 20; // a frame of 3 MiB: a buffer of 4 MiB + 4 KiB

    [Fact]
    public void Buffers_given_back_together_are_all_given_out_again_without_allocating()
    {
        FrameBuffers.DropIdle();
        // 12 out at once (48 MiB, within the idle budget), as a resync has its runs out until the peer has them durable.
        var first = Enumerable.Range(0, 12).Select(_ => FrameBuffers.Rent(Large)).ToList();
        Assert.All(first, b => Assert.True(b.Length >= Large));
        foreach (var buffer in first) FrameBuffers.Return(buffer);
        var again = new byte[12][];
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < again.Length; i++) again[i] = FrameBuffers.Rent(Large);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        foreach (var buffer in again) FrameBuffers.Return(buffer);
        Assert.Equal(0, allocated);
        Assert.Equal(first.ToHashSet(ReferenceEqualityComparer.Instance), again.ToHashSet(ReferenceEqualityComparer.Instance));
    }

    [Fact]
    public void Idle_buffers_are_kept_only_up_to_the_budget()
    {
        FrameBuffers.DropIdle();
        const int size = (4 << 20) + 4096;
        var count = (int)(FrameBuffers.IdleBudget / size) + 4;
        var buffers = Enumerable.Range(0, count).Select(_ => FrameBuffers.Rent(Large)).ToList();
        Assert.Equal(count, buffers.Distinct().Count());
        foreach (var buffer in buffers) FrameBuffers.Return(buffer);
        Assert.Equal(FrameBuffers.IdleBudget / size * size, FrameBuffers.IdleBytes);
    }

    [Fact]
    public void When_the_budget_is_full_of_another_size_the_size_given_back_takes_its_place()
    {
        FrameBuffers.DropIdle();
        // A resync's runs fill the budget and stay idle after it; then batches' chunks (another size) come and go.
        var runs = Enumerable.Range(0, (int)(FrameBuffers.IdleBudget / ((1 << 20) + 4096))).Select(_ => FrameBuffers.Rent((1 << 20) + FrameHeader.Size)).ToList();
        foreach (var run in runs) FrameBuffers.Return(run);
        Assert.True(FrameBuffers.IdleBytes > FrameBuffers.IdleBudget - (1 << 20) - 4096);
        var chunks = Enumerable.Range(0, 64).Select(_ => FrameBuffers.Rent(BatchCopy.ChunkBytes)).ToList();
        foreach (var chunk in chunks) FrameBuffers.Return(chunk);
        Assert.True(FrameBuffers.IdleBytes <= FrameBuffers.IdleBudget);
        // Every chunk was kept: renting them again takes the same buffers, none new.
        var again = Enumerable.Range(0, 64).Select(_ => FrameBuffers.Rent(BatchCopy.ChunkBytes)).ToList();
        Assert.Equal(chunks.ToHashSet(ReferenceEqualityComparer.Instance), again.ToHashSet(ReferenceEqualityComparer.Instance));
        foreach (var chunk in again) FrameBuffers.Return(chunk);
    }

    [Fact]
    public void A_resync_run_of_1_MiB_and_its_header_takes_a_buffer_of_1_MiB_and_one_block()
    {
        FrameBuffers.DropIdle();
        var run = FrameBuffers.Rent(FrameHeader.Size + (1 << 20));
        Assert.Equal((1 << 20) + 4096, run.Length);
        FrameBuffers.Return(run);
        Assert.Equal(run.Length, FrameBuffers.IdleBytes);
        Assert.Same(run, FrameBuffers.Rent((1 << 20) - 4096 + FrameHeader.Size)); // a frame of one block less takes it too
    }
}

[CollectionDefinition(FrameBuffersTests.Name, DisableParallelization = true)]
public sealed class FrameBuffersCollection;
