using ActorCache.Blocks;

namespace ActorCache.Tests.Shared;

/// <summary>
/// Checks that a layer passes every member of <see cref="IBlockTarget"/> down to the layer below,
/// optional capabilities included (DESIGN §1: a decorator must not switch off what it does not know).
/// The layer is stacked on a probe that records what reaches it; every member is called on the layer.
/// </summary>
public static class ForwardingContract
{
    public sealed record Probed(string Member);

    /// <summary>Records every call; answers so the layer above sees a capable target (stages, reads without waiting).</summary>
    public sealed class Probe : IBlockTarget
    {
        public List<string> Calls { get; } = [];

        private void Record(string member)
        {
            lock (Calls) Calls.Add(member);
        }

        public long Size => 1 << 20;
        public TargetCapabilities Capabilities => TargetCapabilities.Trim | TargetCapabilities.Allocation;
        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default) { Record(nameof(ReadAsync)); return default; }
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default) { Record(nameof(WriteAsync)); return default; }
        public ValueTask FlushAsync(CancellationToken ct = default) { Record(nameof(FlushAsync)); return default; }
        public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken ct = default) { Record(nameof(TrimAsync)); return default; }
        public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua, CancellationToken ct = default) { Record(nameof(WriteZeroesAsync)); return default; }
        public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken ct = default) { Record(nameof(GetAllocationAsync)); return ValueTask.FromResult(0); }
        public ValueTask PrefetchAsync(long offset, long length, CancellationToken ct = default) { Record(nameof(PrefetchAsync)); return default; }
        public bool TryReadWithoutWaiting(long offset, Span<byte> destination) { Record(nameof(TryReadWithoutWaiting)); return true; }
        public ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken ct = default) { Record(nameof(TryStageWriteAsync)); return ValueTask.FromResult(true); }
        public ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken ct = default) { Record(nameof(CommitStagedWriteAsync)); return default; }
        public void AbandonStagedWrite(StagedWrite staged) => Record(nameof(AbandonStagedWrite));
        public ValueTask<bool> TrySendAsync(TargetMessage message, CancellationToken ct = default) { Record(nameof(TrySendAsync)); return ValueTask.FromResult(true); }
        public void CollectStatus(TargetStatus status) { Record(nameof(CollectStatus)); status.Add(new Probed("probe")); }
        public ValueTask<CloseReport> CloseAsync() { Record(nameof(CloseAsync)); return ValueTask.FromResult(CloseReport.Durable); }
        public ValueTask DisposeAsync() { Record(nameof(DisposeAsync)); return default; }
    }

    private sealed record Ping : TargetMessage;

    /// <summary>Every member of <see cref="IBlockTarget"/> that a layer must pass down.</summary>
    public static readonly string[] Members = typeof(IBlockTarget).GetMethods().Concat(typeof(IAsyncDisposable).GetMethods()).Select(m => m.Name).Where(n => !n.StartsWith("get_")).Distinct().Order().ToArray();

    /// <summary>Calls every member on the layer <paramref name="stack"/> builds over a probe and asserts each one reached the probe.</summary>
    public static async Task AssertForwardsEverythingAsync(Func<IBlockTarget, IBlockTarget> stack)
    {
        var probe = new Probe();
        var layer = stack(probe);
        var buffer = new byte[4096];
        var staged = new StagedWrite();
        Assert.Equal(probe.Size, layer.Size);
        await layer.ReadAsync(0, buffer);
        await layer.WriteAsync(0, buffer, fua: false);
        await layer.FlushAsync();
        await layer.TrimAsync(0, 4096, fua: false);
        await layer.WriteZeroesAsync(0, 4096, mayDeallocate: false, fastOnly: false, fua: false);
        await layer.GetAllocationAsync(0, 4096, new AllocationExtent[4]);
        await layer.PrefetchAsync(0, 4096);
        Assert.True(layer.TryReadWithoutWaiting(0, buffer), "reads without waiting were switched off");
        Assert.True(await layer.TryStageWriteAsync(0, 4096, staged), "staged writes were switched off");
        await layer.CommitStagedWriteAsync(staged, fua: false);
        layer.AbandonStagedWrite(staged);
        Assert.True(await layer.TrySendAsync(new Ping()), "control messages do not reach the layer below");
        var status = new TargetStatus();
        layer.CollectStatus(status);
        Assert.NotNull(status.Find<Probed>());
        Assert.True((await layer.CloseAsync()).IsDurable);
        await layer.DisposeAsync();
        Assert.Equal(Members, probe.Calls.Distinct().Order().ToArray());
    }
}
