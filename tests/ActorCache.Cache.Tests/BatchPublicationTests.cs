using System.Collections.Concurrent;
using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// The log publishes what it writes (DESIGN §4: replication ships log batches as they were written):
/// a subscriber that sees only the published batches rebuilds the volume byte for byte, every header
/// it gets is the one on disk, and the data stays pinned in the ring until the subscriber lets go.
/// </summary>
public sealed class BatchPublicationTests : IDisposable
{
    private const long Size = 2 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>Copies each batch on another thread (as a replicator would), checks it, then releases it.</summary>
    private sealed class Rebuilder : ILogSubscriber, IDisposable
    {
        private readonly BlockingCollection<LoggedBatch> _batches = new();
        private readonly Task _worker;
        private readonly Guid _volume;
        public readonly byte[] Volume = new byte[Size];
        public long NextSequence = -1;
        public string? Problem;

        public Rebuilder(Guid volume)
        {
            _volume = volume;
            _worker = Task.Run(Apply);
        }

        public void OnBatch(LoggedBatch batch) => _batches.Add(batch);

        private void Apply()
        {
            var entries = new LogEntry[LogFormat.MaxEntries];
            foreach (var batch in _batches.GetConsumingEnumerable())
            {
                try
                {
                    if (!LogFormat.TryReadHeader(batch.HeaderBlock, _volume, out var header, entries) || header != batch.Header)
                        Problem ??= $"batch {batch.Header.Sequence}: the published header block is not the header";
                    if (NextSequence >= 0 && header.Sequence != NextSequence) Problem ??= $"batch {header.Sequence} arrived after {NextSequence - 1}";
                    NextSequence = header.Sequence + 1;
                    var data = 0;
                    foreach (var entry in batch.Entries)
                    {
                        var at = (int)(entry.Block * 4096);
                        if (entry.Type != LogEntryType.Data)
                        {
                            Array.Clear(Volume, at, entry.BlockCount * 4096);
                            continue;
                        }
                        var running = 0xFFFFFFFFu;
                        for (var b = 0; b < entry.BlockCount; b++)
                        {
                            var block = batch.DataBlock(data++);
                            running = Crc32C.Append(running, block);
                            block.CopyTo(Volume.AsSpan(at + b * 4096));
                        }
                        if (~running != entry.Crc) Problem ??= $"batch {header.Sequence}: data of block {entry.Block} does not match its checksum (slot reused?)";
                    }
                }
                finally
                {
                    batch.Release();
                }
            }
        }

        public void Dispose()
        {
            _batches.CompleteAdding();
            _worker.Wait();
        }
    }

    [Fact]
    public async Task A_subscriber_rebuilds_the_volume_from_the_published_batches_alone()
    {
        var random = new Random(5);
        var model = new byte[Size];
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero, segmentSize: 256 << 10));
        using var rebuilder = new Rebuilder(cache.VolumeId);
        using (cache.SubscribeBatches(rebuilder))
        {
            for (var op = 0; op < 600; op++)
            {
                var length = random.Next(1, 40) * 512;
                var offset = random.NextInt64(0, (Size - length) / 512 + 1) * 512;
                switch (random.Next(10))
                {
                    case < 6:
                    {
                        var data = new byte[length];
                        random.NextBytes(data);
                        if (random.Next(2) == 0 && offset % 4096 == 0 && length % 4096 == 0)
                            await CacheFixture.StagedWriteAsync(cache, offset, data, fua: false);
                        else await cache.WriteAsync(offset, data, fua: random.Next(20) == 0);
                        data.CopyTo(model, offset);
                        break;
                    }
                    case < 8:
                        await cache.WriteZeroesAsync(offset, length, mayDeallocate: random.Next(2) == 0, fastOnly: false, fua: false);
                        Array.Clear(model, (int)offset, length);
                        break;
                    default:
                        await cache.FlushAsync();
                        break;
                }
            }
            await cache.FlushAsync();
        }
        rebuilder.Dispose();
        Assert.Null(rebuilder.Problem);
        Assert.True(model.AsSpan().SequenceEqual(rebuilder.Volume), "the volume rebuilt from published batches differs from what was written");
        var content = new byte[Size];
        await cache.ReadAsync(0, content);
        Assert.True(model.AsSpan().SequenceEqual(content));
    }

    [Fact]
    public async Task A_published_batch_keeps_its_ring_slots_until_released()
    {
        var ring = new RingBuffer(64L << 20);
        await using var cache = _fixture.Open(Size, _fixture.Options(), ring: ring);
        var held = new ConcurrentQueue<LoggedBatch>();
        using (cache.SubscribeBatches(new Holder(held)))
        {
            await cache.WriteAsync(0, CacheFixture.Pattern(64 << 10, 3), fua: true);
        }
        Assert.True(held.TryDequeue(out var batch));
        Assert.Equal(16, batch.Header.DataBlocks);
        Assert.Equal(ring.SlotCount - 16, ring.FreeSlots);
        Assert.Equal(CacheFixture.Pattern(64 << 10, 3).AsSpan(0, 4096).ToArray(), batch.DataBlock(0).ToArray());
        batch.Release();
        Assert.Equal(ring.SlotCount, ring.FreeSlots);
    }

    private sealed class Holder(ConcurrentQueue<LoggedBatch> held) : ILogSubscriber
    {
        public void OnBatch(LoggedBatch batch) => held.Enqueue(batch);
    }
}
