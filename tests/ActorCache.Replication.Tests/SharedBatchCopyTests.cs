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
        var liveBefore = Interlocked.Read(ref BatchCopy.Live);
        await using (var f = new ReplicaFixture())
        {
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
        Assert.Equal(liveBefore, Interlocked.Read(ref BatchCopy.Live)); // every copy given back, once
    }

    [Fact]
    public async Task A_peer_dropped_while_it_holds_shared_batches_has_exactly_their_blocks_marked_and_the_other_keeps_them()
    {
        var liveBefore = Interlocked.Read(ref BatchCopy.Live);
        await using (var f = new ReplicaFixture())
        {
            var a = new TestReplica("a", f.Primary, Path.Combine(f.Directory, "a-state"));
            var b = new TestReplica("b", f.Secondary, Path.Combine(f.Directory, "b-state"));
            var c = new TestReplica("c", f.OpenCache("c"), Path.Combine(f.Directory, "c-state"));
            await using var _ = c;
            var held = new HeldFlushTarget(f.Secondary); // B receives and applies, but makes nothing durable: its link holds every frame
            b.Follow(held);
            c.Follow();
            var toB = a.LinkTo(b, catchUpRatio: 0); // back from the bitmap, not the log: the marks are what it resyncs
            var toC = a.LinkTo(c);
            toB.Start();
            toC.Start();
            await TestReplica.WaitInSyncAsync(toB);
            await TestReplica.WaitInSyncAsync(toC);

            held.Hold();
            const int writes = 20; // blocks 0..639, each once
            for (var i = 0; i < writes; i++) await f.WriteAsync(i * WriteBlocks, WriteBlocks, seed: 1000 + i);
            await ReplicaFixture.WaitUntilAsync(() => toC.HoldsEverything && toB.HeldBytes >= writes * WriteBlocks * 4096L, TimeSpan.FromSeconds(20),
                () => $"not every batch shipped: {toB.Status} / {toC.Status}");
            Assert.True(toB.HeldBytes > ReplicaLink.SharedCopyAbove);

            // Dropped with those frames held: their blocks are marked from the header blocks of the copies they share with C.
            toB.Disconnect();
            await ReplicaFixture.WaitUntilAsync(() => toB.Status.OutOfSyncBytes == writes * WriteBlocks * 4096L, TimeSpan.FromSeconds(10),
                () => $"marked {toB.Status.OutOfSyncBytes} bytes, expected {writes * WriteBlocks * 4096L}");

            held.Release();
            toB.Connect();
            await TestReplica.WaitInSyncAsync(toB);
            await TestReplica.WaitInSyncAsync(toC);
            Assert.Equal(0, await TestReplica.DifferingBlocksAsync(a, b));
            Assert.Equal(0, await TestReplica.DifferingBlocksAsync(a, c));
            await CloseAsync(toB, toC, b);
        }
        Assert.Equal(liveBefore, Interlocked.Read(ref BatchCopy.Live));
    }

    private static async Task CloseAsync(ReplicaLink toB, ReplicaLink toC, TestReplica b)
    {
        await toB.DisposeAsync();
        await toC.DisposeAsync();
        if (b.Receiver is not null) await b.Receiver.DisposeAsync();
    }
}
