using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Tests.Shared;
using ActorCache.Volumes;

namespace ActorCache.Tests;

/// <summary>The volume layer knows only the target below: it passes every capability, control message and status down.</summary>
public sealed class VolumeTests
{
    private static readonly VolumeDefinition Definition = new("v", 1 << 20, VolumeMode.WriteBack, "/nowhere", false, false);

    [Fact]
    public Task A_volume_forwards_everything() => ForwardingContract.AssertForwardsEverythingAsync(below => new Volume(Definition, below));

    [Fact]
    public async Task A_read_only_volume_refuses_writes_before_they_reach_the_stack()
    {
        var probe = new ForwardingContract.Probe();
        var volume = new Volume(Definition with { ReadOnly = true }, probe);
        var error = await Assert.ThrowsAsync<BlockTargetException>(async () => await volume.WriteAsync(0, new byte[4096], fua: false));
        Assert.Equal(BlockError.ReadOnly, error.Error);
        Assert.Empty(probe.Calls);
        Assert.True((volume.Capabilities & TargetCapabilities.ReadOnly) != 0);
    }

    /// <summary>Below a volume: turns read-only on demand, and holds a FLUSH until released (the group commit has not reached the writes yet).</summary>
    private sealed class PendingFlushTarget(IBlockTarget below) : ForwardingTarget(below)
    {
        public volatile bool Damaged;
        public readonly TaskCompletionSource Durable = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Flushes;

        public override TargetCapabilities Capabilities => base.Capabilities | (Damaged ? TargetCapabilities.ReadOnly : 0);

        public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref Flushes);
            return new ValueTask(Durable.Task);
        }
    }

    [Fact]
    public async Task A_flush_after_the_volume_turned_read_only_while_serving_still_waits_for_the_writes_before_it()
    {
        // The scrub finds an old damaged record after the open: the cache turns read-only, with writes acknowledged and not durable yet.
        var below = new PendingFlushTarget(new ForwardingContract.Probe());
        var volume = new Volume(Definition, below);
        await volume.WriteAsync(0, new byte[4096], fua: false);
        below.Damaged = true;
        Assert.True(volume.IsReadOnly);
        var flush = volume.FlushAsync();
        Assert.Equal(1, below.Flushes);
        Assert.False(flush.IsCompleted);
        below.Durable.SetResult();
        await flush;
    }

    [Fact]
    public async Task A_mode_switch_is_a_control_message_and_a_stack_without_a_cache_refuses_it()
    {
        var switched = new Volume(Definition, new ForwardingContract.Probe()); // the probe takes any message
        await switched.SetModeAsync(VolumeMode.WriteThrough);
        Assert.Equal(VolumeMode.WriteThrough, switched.Definition.Mode);

        var path = Path.Combine(Path.GetTempPath(), $"volume-{Guid.NewGuid():N}.img");
        try
        {
            await using var plain = new Volume(Definition, FileBacking.Open(path, 1 << 20, create: true));
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => plain.SetModeAsync(VolumeMode.WriteThrough));
            Assert.Contains("needs a restart", refused.Message);
            Assert.Null(plain.Status().Find<CacheStatistics>());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
