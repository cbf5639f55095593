using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// Opening from the persisted index (DESIGN §3: open time must not grow with retained history): the log
/// after it is all that is replayed, and the result is what a full replay of the same log builds — after
/// a clean close, after a power cut at any FLUSH with saves racing the writers, and never from a damaged
/// or stale file (those fall back to a full replay).
/// </summary>
public sealed class PersistedIndexTests : IDisposable
{
    private const long Size = 4 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>The persisted index is used whatever history it covers (the default replays small logs whole).</summary>
    private CacheOptions Options(string? directory = null) => _fixture.Options(segmentSize: 256 << 10) with
    {
        LogDirectory = directory ?? _fixture.LogDirectory,
        MaxBatchBlocks = 16,
        FullReplayBelow = 0,
        IndexSaveInterval = TimeSpan.FromMilliseconds(1),
    };

    [Fact]
    public async Task A_clean_close_persists_the_index_and_the_next_open_replays_nothing()
    {
        var model = new byte[Size];
        IReadOnlyList<SyncPoint> history;
        long generation;
        Dictionary<long, ulong> runtime;
        await using (var cache = _fixture.Open(Size, Options()))
        {
            await WriteRandomlyAsync(cache, model, new Random(1), operations: 200);
            await cache.FlushAsync();
            history = cache.History.ToList();
            generation = cache.Generation;
            runtime = cache.Index.Entries().ToDictionary(e => e.Block, e => e.Entry);
        }
        Assert.True(File.Exists(Path.Combine(_fixture.LogDirectory, PersistedIndex.FileName)));

        await using (var reopened = _fixture.Open(Size, Options()))
        {
            Assert.Equal(0, reopened.Recovery.BatchesReplayed);
            Assert.True(reopened.Recovery.SkippedBytes > 0);
            Assert.Equal(runtime, reopened.Index.Entries().ToDictionary(e => e.Block, e => e.Entry));
            Assert.Equal(history, reopened.History.ToList());
            Assert.Equal(generation, reopened.Generation);
            await AssertContentAsync(reopened, model);
            // It keeps working: more writes, a reopen with a tail to replay after the index.
            await WriteRandomlyAsync(reopened, model, new Random(2), operations: 50);
            await reopened.FlushAsync();
        }
        await using (var again = _fixture.Open(Size, Options()))
            await AssertContentAsync(again, model);
    }

    [Fact]
    public async Task A_damaged_or_stale_persisted_index_is_not_used_and_the_whole_log_is_replayed()
    {
        var model = new byte[Size];
        var random = new Random(3);
        string early;
        await using (var cache = _fixture.Open(Size, Options() with { IndexSaveInterval = TimeSpan.FromHours(1) }))
        {
            await WriteRandomlyAsync(cache, model, random, operations: 60);
            await cache.FlushAsync();
            Assert.True(await cache.PersistIndexAsync());
            early = Path.Combine(_fixture.Directory, "early-index");
            File.Copy(Path.Combine(_fixture.LogDirectory, PersistedIndex.FileName), early);
            await WriteRandomlyAsync(cache, model, random, operations: 60);
            await cache.FlushAsync();
        }
        var indexFile = Path.Combine(_fixture.LogDirectory, PersistedIndex.FileName);
        var saved = await File.ReadAllBytesAsync(indexFile);

        // A flipped bit in an entry: the checksum catches it.
        var damaged = (byte[])saved.Clone();
        damaged[^5] ^= 0x10;
        await File.WriteAllBytesAsync(indexFile, damaged);
        await using (var reopened = _fixture.Open(Size, Options()))
        {
            Assert.Equal(0, reopened.Recovery.SkippedBytes);
            Assert.True(reopened.Recovery.BatchesReplayed > 0);
            await AssertContentAsync(reopened, model);
        }

        // No file: nothing to use, and nothing wrong.
        Assert.Null(PersistedIndex.TryLoad(new LogDirectory(_fixture.Directory), Guid.Empty, out var none));
        Assert.Null(none);

        // A file that names a batch the log does not hold there (a log that was replaced or rewritten since).
        File.Copy(early, indexFile, overwrite: true);
        var earlyIndex = PersistedIndex.TryLoad(new LogDirectory(_fixture.LogDirectory), Checkpoint.Load(_fixture.LogDirectory)!.VolumeId, out var problem);
        Assert.NotNull(earlyIndex);
        Assert.Null(problem);
        (earlyIndex! with { BatchHeaderCrc = earlyIndex.BatchHeaderCrc ^ 1 }).Save(new LogDirectory(_fixture.LogDirectory));
        await using (var reopened = _fixture.Open(Size, Options()))
        {
            Assert.Equal(0, reopened.Recovery.SkippedBytes);
            await AssertContentAsync(reopened, model);
        }
    }

    [Theory]
    [InlineData(21)]
    [InlineData(22)]
    public async Task A_power_cut_at_any_flush_recovers_through_the_persisted_index_as_a_full_replay_does(int seed)
    {
        // Writers on two tasks with flushes; the index is persisted every few milliseconds meanwhile, so
        // captures freeze the index with writes queued and batches in flight. At every FLUSH the log is
        // cut as a power loss leaves it, with the index file as it was then; opening through it must give
        // the same index, sync points, generation and content as a full replay of the same image.
        var random = new Random(seed);
        var options = Options();
        var recording = new RecordingMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize));
        var indexFile = Path.Combine(options.LogDirectory, PersistedIndex.FileName);
        var filesAtSync = new Dictionary<int, byte[]?>();
        recording.OnSync = () =>
        {
            byte[]? bytes = null;
            try { bytes = File.Exists(indexFile) ? File.ReadAllBytes(indexFile) : null; }
            catch (IOException) { } // renamed over while read: the older one is as good
            lock (filesAtSync) filesAtSync[recording.SyncCount] = bytes;
        };
        var flushes = new List<int>();
        await using (var cache = _fixture.Open(Size, options, medium: recording))
        {
            var writers = Enumerable.Range(0, 2).Select(w => Task.Run(async () =>
            {
                var mine = new Random(seed * 10 + w);
                // 250 operations each, and on until a few index saves ran among them (a fast run once had only 3).
                for (var op = 0; op < 250 || (cache.IndexSaves <= 3 && op < 1000); op++)
                {
                    var blocks = mine.Next(1, 9);
                    var block = mine.Next(0, (int)(Size / 4096) - blocks);
                    if (mine.Next(10) == 0) await cache.TrimAsync(block * 4096L, blocks * 4096, fua: false);
                    else await cache.WriteAsync(block * 4096L, CacheFixture.Pattern(blocks * 4096, mine.Next()), fua: mine.Next(20) == 0);
                    if (mine.Next(8) == 0)
                    {
                        await cache.FlushAsync();
                        lock (flushes) flushes.Add(recording.SyncCount);
                    }
                }
            })).ToArray();
            await Task.WhenAll(writers);
            Assert.True(cache.IndexSaves > 3, $"only {cache.IndexSaves} index saves ran during the writes");
        }

        var usedIndex = 0;
        foreach (var syncs in flushes.Distinct().Where(s => s > 0))
        {
            var tornSectors = random.Next(0, 16);
            var viaIndex = BuildImage($"via-index-{syncs}", syncs, tornSectors, filesAtSync.GetValueOrDefault(syncs));
            var fullReplay = BuildImage($"full-{syncs}", syncs, tornSectors, indexFile: null);
            await using var a = _fixture.Open(Size, options with { LogDirectory = viaIndex }, backing: FileBacking.Open(Path.Combine(viaIndex, "backing.img"), Size, create: false));
            await using var b = _fixture.Open(Size, options with { LogDirectory = fullReplay }, backing: FileBacking.Open(Path.Combine(fullReplay, "backing.img"), Size, create: false));
            if (a.Recovery.SkippedBytes > 0) usedIndex++;
            Assert.Null(a.Recovery.Corruption);
            Assert.Equal(b.Recovery.NextSequence, a.Recovery.NextSequence);
            Assert.Equal(b.Generation, a.Generation);
            Assert.Equal(b.History.ToList(), a.History.ToList());
            Assert.Equal(b.Index.Entries().ToList(), a.Index.Entries().ToList());
            var left = new byte[Size];
            var right = new byte[Size];
            await a.ReadAsync(0, left);
            await b.ReadAsync(0, right);
            Assert.True(left.AsSpan().SequenceEqual(right), $"after sync {syncs} the volume opened through the persisted index differs from a full replay");
        }
        Assert.True(usedIndex >= 3, $"only {usedIndex} crash images were opened through a persisted index");

        string BuildImage(string name, int syncs, int torn, byte[]? indexFile)
        {
            var image = Path.Combine(_fixture.Directory, name);
            Directory.CreateDirectory(image);
            File.Copy(Path.Combine(options.LogDirectory, Checkpoint.FileName), Path.Combine(image, Checkpoint.FileName));
            if (indexFile is not null) File.WriteAllBytes(Path.Combine(image, PersistedIndex.FileName), indexFile);
            using (var target = new SegmentFiles(image, options.SegmentSize))
                recording.BuildCrashImage(target, syncs, tornSectors: torn);
            File.Copy(_fixture.BackingPath, Path.Combine(image, "backing.img"));
            return image;
        }
    }

    private static async Task WriteRandomlyAsync(WriteBackCache cache, byte[] model, Random random, int operations)
    {
        for (var op = 0; op < operations; op++)
        {
            var blocks = random.Next(1, 9);
            var block = random.Next(0, (int)(model.Length / 4096) - blocks);
            if (random.Next(8) == 0)
            {
                await cache.TrimAsync(block * 4096L, blocks * 4096, fua: false);
                Array.Clear(model, block * 4096, blocks * 4096);
            }
            else
            {
                var data = CacheFixture.Pattern(blocks * 4096, random.Next());
                await cache.WriteAsync(block * 4096L, data, fua: false);
                data.CopyTo(model, block * 4096L);
            }
            if (random.Next(10) == 0) await cache.FlushAsync();
        }
    }

    private static async Task AssertContentAsync(WriteBackCache cache, byte[] model)
    {
        var content = new byte[model.Length];
        await cache.ReadAsync(0, content);
        Assert.True(model.AsSpan().SequenceEqual(content), "the volume's content differs from what was written");
    }
}
