using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>Whole-block writes received straight into ring slots (the NBD front's one-copy path).</summary>
public sealed class StagedWriteTests : IDisposable
{
    private const long Size = 8 << 20;
    private readonly CacheFixture _fixture = new();
    private readonly RingBuffer _ring = new(64L << 20); // private, so free-slot counts are exact

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task Partial_blocks_and_other_modes_are_not_staged()
    {
        await using var cache = _fixture.Open(Size, ring: _ring);
        var staged = new StagedWrite();
        Assert.False(await cache.TryStageWriteAsync(512, 4096, staged));
        Assert.False(await cache.TryStageWriteAsync(0, 1024, staged));
        Assert.Null(staged.StagedBy);
        await cache.SetModeAsync(CacheMode.WriteThrough);
        Assert.False(await cache.TryStageWriteAsync(0, 4096, staged));
    }

    [Fact]
    public async Task A_committed_staged_write_is_read_back_from_ring_log_and_after_reopen()
    {
        var data = CacheFixture.Pattern(1 << 20, 1);
        await using (var cache = _fixture.Open(Size, ring: _ring))
        {
            await cache.WriteAsync(0, CacheFixture.Pattern(2 << 20, 9), fua: false); // something to overwrite
            await CacheFixture.StagedWriteAsync(cache, 1 << 20, data, fua: false);
            var read = new byte[data.Length];
            await cache.ReadAsync(1 << 20, read);
            Assert.Equal(data, read);
            await cache.FlushAsync();
            await cache.ReadAsync(1 << 20, read);
            Assert.Equal(data, read);
        }
        await using (var cache = _fixture.Open(Size, ring: _ring))
        {
            var read = new byte[data.Length];
            await cache.ReadAsync(1 << 20, read);
            Assert.Equal(data, read);
        }
        Assert.Equal(_ring.SlotCount, _ring.FreeSlots);
    }

    [Fact]
    public async Task Slots_come_back_in_runs_so_a_large_write_needs_few_receives()
    {
        await using var cache = _fixture.Open(Size, _fixture.Options(segmentSize: 8 << 20) with { MaxBatchBlocks = 256 }, ring: _ring);
        for (var i = 0; i < 8; i++)
        {
            await CacheFixture.StagedWriteAsync(cache, i % 4 * (1L << 20), CacheFixture.Pattern(1 << 20, i), fua: false);
            await cache.FlushAsync();
        }
        var staged = new StagedWrite();
        Assert.True(await cache.TryStageWriteAsync(4 << 20, 1 << 20, staged));
        Assert.True(staged.SegmentCount <= 4, $"a 1 MiB write got {staged.SegmentCount} pieces");
        cache.AbandonStagedWrite(staged);
    }

    [Fact]
    public async Task An_abandoned_write_gives_its_slots_back_and_changes_nothing()
    {
        await using var cache = _fixture.Open(Size, ring: _ring);
        var staged = new StagedWrite();
        Assert.True(await cache.TryStageWriteAsync(0, 256 << 10, staged));
        Assert.Equal(_ring.SlotCount - 64, _ring.FreeSlots);
        staged.Segment(0).Span.Fill(0xEE);
        cache.AbandonStagedWrite(staged);
        Assert.Null(staged.StagedBy);
        Assert.Equal(_ring.SlotCount, _ring.FreeSlots);
        var read = new byte[256 << 10];
        await cache.ReadAsync(0, read);
        Assert.All(read, b => Assert.Equal(0, b));
        Assert.Equal(0, cache.Index.CachedBlocks);
    }

    [Fact]
    public async Task A_write_staged_before_a_switch_to_write_through_lands_on_the_backing()
    {
        var data = CacheFixture.Pattern(64 << 10, 3);
        await using var cache = _fixture.Open(Size, ring: _ring);
        var staged = new StagedWrite();
        Assert.True(await cache.TryStageWriteAsync(64 << 10, data.Length, staged));
        var filled = 0;
        for (var i = 0; i < staged.SegmentCount; i++)
        {
            data.AsSpan(filled, staged.Segment(i).Length).CopyTo(staged.Segment(i).Span);
            filled += staged.Segment(i).Length;
        }
        await cache.SetModeAsync(CacheMode.WriteThrough);
        await cache.CommitStagedWriteAsync(staged, fua: false);
        Assert.Equal(0, cache.Index.CachedBlocks);
        Assert.Equal(_ring.SlotCount, _ring.FreeSlots);
        await using var raw = FileBacking.Open(_fixture.BackingPath, Size, create: false, readOnly: true);
        var backing = new byte[data.Length];
        await raw.ReadAsync(64 << 10, backing);
        Assert.Equal(data, backing);
    }
}
