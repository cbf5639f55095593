using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// Simulated power loss: every write and sync under the log is recorded; for every FLUSH, the log is
/// rebuilt as a power cut right after it would leave it (later writes lost, the next one torn) and
/// recovered. Flushed data must be there, the result must be a prefix of the writes in log order,
/// and the recovered index must equal the runtime index at that sync.
/// </summary>
public sealed class PowerLossTests : IDisposable
{
    private const long Size = 256 << 10; // 64 blocks: small enough to keep a copy of the volume per operation
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    public async Task Every_flush_point_recovers_to_a_prefix_that_holds_the_flushed_writes(int seed)
    {
        var random = new Random(seed);
        var options = _fixture.Options(segmentSize: 64 << 10) with { MaxBatchBlocks = 8 };
        var recording = new RecordingMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        var model = new byte[Size];
        var states = new List<byte[]> { (byte[])model.Clone() };
        var flushPoints = new List<(int Syncs, int Operations, IReadOnlyList<SyncPoint> History, long Generation)>();
        var cache = _fixture.Open(Size, options, medium: recording);
        // The runtime index and batch count as they were at each sync, keyed by the sync's number.
        var atSync = new Dictionary<int, (Dictionary<long, ulong> Index, long Batches)>();
        recording.OnSync = () =>
        {
            var index = cache.Index.Entries().ToDictionary(e => e.Block, e => e.Entry);
            lock (atSync) atSync[recording.SyncCount] = (index, cache.Statistics.BatchesWritten);
        };
        await using (cache)
        {
            for (var op = 0; op < 300; op++)
            {
                var sectors = random.Next(1, 24);
                var offset = random.NextInt64(0, (Size - sectors * 512) / 512 + 1) * 512;
                if (random.Next(8) == 0)
                {
                    await cache.TrimAsync(offset, sectors * 512, fua: false);
                    Array.Clear(model, (int)offset, sectors * 512);
                }
                else
                {
                    var data = new byte[sectors * 512];
                    random.NextBytes(data);
                    await cache.WriteAsync(offset, data, fua: false);
                    data.CopyTo(model, offset);
                }
                states.Add((byte[])model.Clone());
                if (random.Next(12) == 0)
                {
                    await cache.FlushAsync();
                    flushPoints.Add((recording.SyncCount, states.Count - 1, cache.History.ToList(), cache.Generation));
                }
            }
        }
        Assert.True(flushPoints.Count >= 10, "the sequence needs enough flush points to mean something");

        foreach (var (syncs, operations, history, generation) in flushPoints)
        {
            var (runtime, batchesAtSync) = atSync[syncs];
            var image = Path.Combine(_fixture.Directory, $"image-{syncs}");
            Directory.CreateDirectory(image);
            File.Copy(Path.Combine(options.LogDirectory, Checkpoint.FileName), Path.Combine(image, Checkpoint.FileName));
            using (var target = new SegmentFiles(image, options.SegmentSize))
                recording.BuildCrashImage(target, syncs, tornSectors: random.Next(0, 16));
            var backing = Path.Combine(image, "backing.img");
            File.Copy(_fixture.BackingPath, backing);

            await using var recovered = _fixture.Open(Size, options with { LogDirectory = image },
                backing: FileBacking.Open(backing, Size, create: false));
            Assert.Null(recovered.Recovery.Corruption);
            // Every generation closed by then comes back with its number and time; none is reused.
            var recoveredHistory = recovered.History.ToList();
            Assert.True(recoveredHistory.Take(history.Count).SequenceEqual(history),
                $"after sync {syncs} the recovered sync points differ: {string.Join(",", recoveredHistory.Take(history.Count))} vs {string.Join(",", history)}");
            Assert.True(recovered.Generation >= generation, $"after sync {syncs} recovery came back at generation {recovered.Generation}, below {generation}");
            var content = new byte[Size];
            await recovered.ReadAsync(0, content);
            var match = Enumerable.Range(operations, states.Count - operations).FirstOrDefault(j => states[j].AsSpan().SequenceEqual(content), -1);
            if (match < 0)
            {
                var differing = Enumerable.Range(0, (int)(Size / 4096)).Where(b => !states[operations].AsSpan(b * 4096, 4096).SequenceEqual(content.AsSpan(b * 4096, 4096)))
                    .Select(b => $"{b}:{recovered.Index.Get(b):x}/{(runtime.TryGetValue(b, out var r) ? r : 0):x}");
                Assert.Fail($"after sync {syncs} the recovered volume is not the state after {operations} or more operations; differing blocks {string.Join(" ", differing)}; torn {recovered.Recovery.TornTail}; batches {recovered.Recovery.BatchesReplayed}, at the sync {batchesAtSync}");
            }

            // The torn write can land whole by chance (its missing tail equal to what was there): then the
            // recovered log holds one batch more than the runtime had at the sync, and the indexes differ by it.
            if (recovered.Recovery.BatchesReplayed != batchesAtSync) continue;
            foreach (var (block, entry) in runtime)
                if (BlockIndex.IsLogged(entry))
                    Assert.Equal(entry, recovered.Index.Get(block));
            foreach (var (block, entry) in recovered.Index.Entries())
                Assert.True(runtime.ContainsKey(block), $"block {block} is in the recovered index ({entry:x}) but was on the backing at sync {syncs}");
        }
    }

    /// <summary>
    /// The last batch did not fit in its segment's rest and went to the next segment start, and the cut tore
    /// it (its header landed, not all its data): recovery cuts it off, and the log ends where the batch
    /// before it did, so the destager finds every batch it is told is durable and the volume drains.
    /// </summary>
    [Fact]
    public async Task A_torn_batch_at_the_next_segment_start_ends_the_log_where_the_previous_batch_did()
    {
        var options = _fixture.Options(retention: TimeSpan.FromHours(1), segmentSize: 64 << 10) with { MaxBatchBlocks = 8 };
        var recording = new RecordingMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        var model = new byte[Size];
        var syncsBeforeLast = 0;
        await using (var cache = _fixture.Open(Size, options, medium: recording))
        {
            // Three batches of a header and three blocks fill 48 KiB of the 64 KiB segment; the fourth (20 KiB) goes to the next one.
            for (var i = 0; i < 4; i++)
            {
                var data = CacheFixture.Pattern((i < 3 ? 3 : 4) * 4096, i);
                if (i == 3) syncsBeforeLast = recording.SyncCount;
                await cache.WriteAsync(i * 4 * 4096, data, fua: false);
                await cache.FlushAsync();
                if (i < 3) data.CopyTo(model, i * 4 * 4096);
            }
        }
        // The first write after that sync is the last batch, at the next segment's start.
        var syncAt = recording.Ops.Select((op, i) => (op, i)).Where(x => x.op.Data is null).ElementAt(syncsBeforeLast - 1).i;
        Assert.Equal(options.SegmentSize, recording.Ops[syncAt + 1].Address);

        var image = Path.Combine(_fixture.Directory, "image");
        Directory.CreateDirectory(image);
        File.Copy(Path.Combine(options.LogDirectory, Checkpoint.FileName), Path.Combine(image, Checkpoint.FileName));
        using (var target = new SegmentFiles(image, options.SegmentSize))
            recording.BuildCrashImage(target, syncsBeforeLast, tornSectors: 9); // the 4 KiB header and one sector of data
        var backing = Path.Combine(image, "backing.img");
        File.Copy(_fixture.BackingPath, backing);

        await using var recovered = _fixture.Open(Size, options with { LogDirectory = image, RetentionTime = TimeSpan.Zero },
            backing: FileBacking.Open(backing, Size, create: false));
        Assert.Null(recovered.Recovery.Corruption);
        Assert.NotNull(recovered.Recovery.TornTail);
        var drain = recovered.DrainAsync();
        Assert.True(await Task.WhenAny(drain, Task.Delay(TimeSpan.FromSeconds(10))) == drain, "the drain did not finish");
        await drain;
        Assert.Null(recovered.Statistics.BackingFailure);
        var content = new byte[Size];
        await recovered.ReadAsync(0, content);
        Assert.Equal(model, content);
    }
}
