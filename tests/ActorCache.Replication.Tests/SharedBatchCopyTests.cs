using Xunit.Abstractions;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A large batch is copied out of the ring once and that copy is shipped to every peer, each behind a frame header of its own
/// link (<see cref="BatchCopy"/>). Counted process-wide, so these run in the frame buffers' collection, alone.
/// </summary>
[Collection(FrameBuffersTests.Name)]
public sealed class SharedBatchCopyTests(ITestOutputHelper output)
{
    private const int WriteBlocks = 32; // 128 KiB: with its header block a frame above ReplicaLink.SharedCopyAbove

    [Fact]
    public async Task Two_peers_get_a_large_batch_from_one_copy_and_both_end_equal_to_the_primary()
    {
        Assert.True((1 + WriteBlocks) * 4096 > ReplicaLink.SharedCopyAbove);
        await using var f = new ReplicaFixture();
        var (a, b, c, toB, toC) = await TestReplica.StartThreeAsync(f);
        await using var _ = c;
        var copiesBefore = Interlocked.Read(ref BatchCopy.Made);
        const int writes = 40;
        for (var i = 0; i < writes; i++)
        {
            await f.WriteAsync(i * WriteBlocks % (TestReplica.Blocks - WriteBlocks), WriteBlocks, seed: 100 + i);
            await f.Primary.FlushAsync(); // one batch per write: the write and its sync point
        }
        await TestReplica.WaitInSyncAsync(toB);
        await TestReplica.WaitInSyncAsync(toC);
        var copies = Interlocked.Read(ref BatchCopy.Made) - copiesBefore;
        output.WriteLine($"{writes} large batches shipped to two peers; copies made: {copies}");
        Assert.InRange(copies, 1, writes); // one per batch; a copy per link would make twice as many
        Assert.Equal(0, await TestReplica.DifferingBlocksAsync(a, b));
        Assert.Equal(0, await TestReplica.DifferingBlocksAsync(a, c));
        await CloseAsync(toB, toC, b);
    }

    [Fact]
    public async Task A_peer_dropped_with_shared_batches_in_flight_resyncs_what_they_held_and_the_other_keeps_them()
    {
        await using var f = new ReplicaFixture();
        var (a, b, c, toB, toC) = await TestReplica.StartThreeAsync(f);
        await using var _ = c;
        // Large writes stream on while B is dropped and connected again: the frames B's link held at that moment (sharing
        // their bytes with C's) are marked out of sync from their header blocks, and C's copies of them stay intact.
        var writing = Task.Run(async () =>
        {
            for (var i = 0; i < 200; i++)
            {
                await f.WriteAsync(i * 7 % (TestReplica.Blocks - WriteBlocks), WriteBlocks, seed: 1000 + i);
                if (i % 10 == 9) await f.Primary.FlushAsync();
            }
            await f.Primary.FlushAsync();
        });
        await ReplicaFixture.WaitUntilAsync(() => toB.HeldBytes > 0, TimeSpan.FromSeconds(10), () => "B's link never held a frame");
        toB.Disconnect();
        await Task.Delay(50);
        toB.Connect();
        await writing;
        await TestReplica.WaitInSyncAsync(toB);
        await TestReplica.WaitInSyncAsync(toC);
        Assert.Equal(0, await TestReplica.DifferingBlocksAsync(a, b));
        Assert.Equal(0, await TestReplica.DifferingBlocksAsync(a, c));
        await CloseAsync(toB, toC, b);
    }

    private static async Task CloseAsync(ReplicaLink toB, ReplicaLink toC, TestReplica b)
    {
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
    }
}
