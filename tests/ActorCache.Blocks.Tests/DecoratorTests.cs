using ActorCache.Blocks;
using ActorCache.Tests.Shared;

namespace ActorCache.Blocks.Tests;

/// <summary>Every decorator passes every capability down (a delay filter once turned off the cache's inline read path).</summary>
public sealed class DecoratorTests
{
    [Fact]
    public Task DelayedTarget_forwards_everything() => ForwardingContract.AssertForwardsEverythingAsync(below => new DelayedTarget(below, TimeSpan.FromMilliseconds(1)));

    [Fact]
    public Task FaultyTarget_forwards_everything_while_healthy() => ForwardingContract.AssertForwardsEverythingAsync(below => new FaultyTarget(below));

    [Fact]
    public async Task FaultyTarget_fails_writes_but_not_reads_when_told()
    {
        var probe = new ForwardingContract.Probe();
        var faulty = new FaultyTarget(probe) { FailWrites = true };
        var error = await Assert.ThrowsAsync<BlockTargetException>(async () => await faulty.WriteAsync(0, new byte[4096], fua: false));
        Assert.Equal(BlockError.Io, error.Error);
        await faulty.ReadAsync(0, new byte[4096]);
        Assert.Equal(["ReadAsync"], probe.Calls);
    }
}
