using ActorCache.Blocks;
using Xunit.Abstractions;

namespace ActorCache.Cache.Tests;

/// <summary>
/// Kept snapshots through a power cut at any moment, the destager's included. Every write and fdatasync
/// to every file the cache writes (log segments, backing, snapshot store, checkpoint) is journaled while
/// random writes, trims, zeroes and flushes run with destaging racing (retention zero), snapshots are
/// kept at random flush points and deleted again (so the store is compacted). Then, for a sample of
/// positions around every sync and rename, the files are rebuilt as a cut there leaves them (see
/// <see cref="CrashImages"/>) and the cache reopened over them with the snapshots the host knew of kept,
/// as a restarted node does: each kept snapshot must read exactly its copy of the volume, and the live
/// volume must be one it held between the last completed FLUSH and the last write begun, both before
/// and after the reopened cache destages everything it recovered.
/// </summary>
public sealed class SnapshotPowerLossTests(ITestOutputHelper output) : IDisposable
{
    private const int Blocks = 128;
    private const long Size = Blocks * 4096L;
    private const int Operations = 300;
    private const int MaxCuts = 160;
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    /// <summary>A kept snapshot as the host knows it: kept from one journal position (its protection answered), deleted or expired at another.</summary>
    private sealed class Snapshot(SyncPoint point, byte[] content, int keptAt)
    {
        public SyncPoint Point { get; } = point;
        public byte[] Content { get; } = content;
        public int KeptAt { get; } = keptAt;
        public int GoneAt { get; set; } = int.MaxValue;
        public bool KeptAtCut(int cut) => KeptAt <= cut && cut < GoneAt;
    }

    [Theory]
    [InlineData(31)]
    [InlineData(32)]
    public async Task Kept_snapshots_and_flushed_writes_survive_a_power_cut_anywhere(int seed)
    {
        var random = new Random(seed);
        var options = _fixture.Options(retention: TimeSpan.Zero, segmentSize: 64 << 10) with
        {
            MaxBatchBlocks = 8,
            SnapshotSpace = 160 << 10,
            SnapshotSpacePolicy = SnapshotSpacePolicy.ExpireOldest,
        };
        var journal = new CrashJournal();
        var model = new byte[Size];
        var states = new List<byte[]> { (byte[])model.Clone() };
        var started = new List<int>(); // the journal position at which each state-changing operation began
        var flushes = new List<(int Position, int State)>();
        var snapshots = new List<Snapshot>();
        var cache = _fixture.Open(Size, options,
            medium: new JournaledMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize), journal),
            backing: new JournaledBacking(FileBacking.Open(_fixture.BackingPath, Size, create: true), journal),
            directory: new JournaledDirectory(new LogDirectory(options.LogDirectory), journal));
        var expired = 0;
        // The host marks a snapshot expired when told (on the destager's thread, before its copies can go).
        cache.PointExpired += sequence =>
        {
            lock (snapshots)
                foreach (var snapshot in snapshots.Where(s => s.Point.Sequence == sequence && s.GoneAt == int.MaxValue))
                {
                    snapshot.GoneAt = journal.Position;
                    expired++;
                }
        };
        long preserved;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using (cache)
        {
            for (var op = 0; op < Operations; op++)
            {
                var length = random.Next(1, 33) * 512;
                var offset = random.NextInt64(0, (Size - length) / 512 + 1) * 512;
                switch (random.Next(100))
                {
                    case < 52:
                        var data = new byte[length];
                        random.NextBytes(data);
                        started.Add(journal.Position);
                        await cache.WriteAsync(offset, data, fua: false);
                        data.CopyTo(model, offset);
                        states.Add((byte[])model.Clone());
                        break;
                    case < 60:
                        started.Add(journal.Position);
                        await cache.TrimAsync(offset, length, fua: false);
                        Array.Clear(model, (int)offset, length);
                        states.Add((byte[])model.Clone());
                        break;
                    case < 67:
                        started.Add(journal.Position);
                        await cache.WriteZeroesAsync(offset, length, mayDeallocate: false, fastOnly: false, fua: false);
                        Array.Clear(model, (int)offset, length);
                        states.Add((byte[])model.Clone());
                        break;
                    case < 87:
                    {
                        await cache.FlushAsync();
                        flushes.Add((journal.Position, states.Count - 1));
                        if (random.Next(3) != 0 || cache.History.Latest is not { } point) break;
                        lock (snapshots)
                            if (snapshots.Any(s => s.Point.Generation == point.Generation)) break;
                        if (!await cache.ProtectAsync(point.Sequence)) break;
                        lock (snapshots) snapshots.Add(new Snapshot(point, (byte[])model.Clone(), journal.Position));
                        break;
                    }
                    case < 92:
                    {
                        Snapshot? delete;
                        lock (snapshots)
                        {
                            var kept = snapshots.Where(s => s.GoneAt == int.MaxValue).ToList();
                            delete = kept.Count == 0 ? null : kept[random.Next(kept.Count)];
                            if (delete is not null) delete.GoneAt = journal.Position; // the host forgets it first, then lets its history go
                        }
                        if (delete is not null) cache.Unprotect(delete.Point.Sequence);
                        break;
                    }
                    default:
                        await Task.Delay(random.Next(5, 40)); // the destager moves the horizon past kept points meanwhile
                        break;
                }
            }
            await cache.FlushAsync();
            flushes.Add((journal.Position, states.Count - 1));
            for (var deadline = DateTime.UtcNow.AddSeconds(10); cache.Statistics.CachedBlocks > 0 && DateTime.UtcNow < deadline;)
                await Task.Delay(10);
            preserved = cache.Statistics.PreservedBlocks;
        }

        var ops = journal.Snapshot();
        var storeFiles = ops.Where(o => o.Kind == CrashJournal.Kind.Create && o.Name!.StartsWith(SnapshotStore.FileName, StringComparison.Ordinal))
            .Select(o => o.File).ToHashSet();
        var storeWrites = ops.Count(o => o.Kind == CrashJournal.Kind.Write && storeFiles.Contains(o.File));
        var compactions = ops.Count(o => o.Kind == CrashJournal.Kind.Rename && o.To == SnapshotStore.FileName);
        output.WriteLine($"{Operations} operations in {clock.Elapsed.TotalSeconds:F1} s: {ops.Count} journaled, {ops.Count(o => o.Kind == CrashJournal.Kind.Sync)} syncs, {storeWrites} store writes, " +
                         $"{compactions} compactions, {snapshots.Count} snapshots kept ({snapshots.Count(s => s.GoneAt != int.MaxValue) - expired} deleted, {expired} expired), " +
                         $"{preserved} blocks preserved at the end");
        Assert.True(storeWrites > 0, "nothing was ever preserved: copy-on-write was not exercised");
        Assert.True(compactions > 0, "the snapshot store was never compacted");

        var cuts = ChooseCuts(ops, random);
        var images = new CrashImages(ops, options.SegmentSize);
        var failures = new List<string>();
        var failedCuts = 0;
        var checkedSnapshots = 0;
        var index = 0;
        clock.Restart();
        foreach (var cut in cuts)
        {
            var before = failures.Count;
            var unsynced = (CrashImages.Unsynced)(index++ % 3);
            var directory = Path.Combine(_fixture.Directory, $"cut-{cut}");
            var backingPath = Path.Combine(directory, "backing.img");
            images.Build(cut, unsynced, random, Path.Combine(directory, "log"), backingPath, Size);
            List<Snapshot> kept;
            lock (snapshots) kept = [.. snapshots.Where(s => s.KeptAtCut(cut))];
            var flushed = flushes.LastOrDefault(f => f.Position <= cut).State;
            var issued = started.Count(p => p < cut);
            var where = $"cut at {cut} ({unsynced}) after {Describe(ops, cut - 1)}";
            try
            {
                checkedSnapshots += await CheckAsync(options with { LogDirectory = Path.Combine(directory, "log") }, backingPath, kept, states, flushed, issued,
                    where, failures);
            }
            catch (Exception e)
            {
                failures.Add($"{where}: {e.GetType().Name}: {e.Message}");
            }
            Directory.Delete(directory, recursive: true);
            if (failures.Count > before) failedCuts++;
        }
        output.WriteLine($"{cuts.Count} cuts in {clock.Elapsed.TotalSeconds:F1} s, {checkedSnapshots} snapshot reads checked, {failedCuts} cuts failed");
        Assert.True(failedCuts == 0, $"{failedCuts} of {cuts.Count} power cuts broke the contract:\n" + string.Join("\n", failures.Take(8)));
        Assert.True(checkedSnapshots >= cuts.Count, "too few cuts had a kept snapshot to check");
    }

    /// <summary>
    /// Positions right before and right after every sync and rename: those around the destager's own
    /// (backing, store, checkpoint) first, then the log's, spread over the run, at most <see cref="MaxCuts"/>.
    /// </summary>
    private static List<int> ChooseCuts(IReadOnlyList<CrashJournal.Op> ops, Random random)
    {
        var destager = new SortedSet<int>();
        var log = new SortedSet<int>();
        for (var i = 0; i < ops.Count; i++)
        {
            if (ops[i].Kind is not (CrashJournal.Kind.Sync or CrashJournal.Kind.Rename or CrashJournal.Kind.DirectorySync)) continue;
            var set = ops[i].File == CrashJournal.Log ? log : destager;
            set.Add(i);
            set.Add(i + 1);
        }
        log.ExceptWith(destager);
        var chosen = Spread(destager, MaxCuts * 3 / 4);
        chosen.UnionWith(Spread(log, MaxCuts - chosen.Count));
        return [.. chosen.Order()];

        HashSet<int> Spread(SortedSet<int> from, int count)
        {
            var all = from.ToList();
            if (all.Count <= count) return [.. all];
            // Evenly spaced, from a random start, so every part of the run is cut somewhere.
            var step = (double)all.Count / count;
            var start = random.NextDouble() * step;
            return [.. Enumerable.Range(0, count).Select(i => all[(int)(start + i * step)])];
        }
    }

    private static string Describe(IReadOnlyList<CrashJournal.Op> ops, int i) =>
        i < 0 ? "nothing" : $"op {i} {ops[i].Kind} {ops[i].File} {ops[i].Name ?? ""}{(ops[i].To is { } to ? " -> " + to : "")}".TrimEnd();

    /// <summary>Reopens the cache over a crash image and checks the kept snapshots and the live volume, then again once it has destaged everything.</summary>
    private async Task<int> CheckAsync(CacheOptions options, string backingPath, List<Snapshot> kept, List<byte[]> states, int flushed, int issued,
        string where, List<string> failures)
    {
        var checkedSnapshots = 0;
        var expired = new HashSet<long>();
        await using var recovered = _fixture.Open(Size, options, backing: FileBacking.Open(backingPath, Size, create: false),
            kept: kept.Select(s => s.Point.Sequence));
        recovered.PointExpired += sequence => { lock (expired) expired.Add(sequence); };
        // Cut after the expiry was recorded and before the host heard of it: the reopened cache says so instead.
        lock (expired) expired.UnionWith(recovered.ExpiredAtOpen);
        bool IsExpired(Snapshot snapshot)
        {
            lock (expired) return expired.Contains(snapshot.Point.Sequence);
        }
        if (recovered.Recovery.Corruption is { } corruption)
        {
            failures.Add($"{where}: recovery found corruption: {corruption}");
            return 0;
        }
        var live = new byte[Size];
        await recovered.ReadAsync(0, live);
        var state = Enumerable.Range(flushed, issued - flushed + 1).FirstOrDefault(j => states[j].AsSpan().SequenceEqual(live), -1);
        if (state < 0)
            failures.Add($"{where}: the live volume is none of the states after {flushed} (flushed) to {issued} (begun) operations; " +
                         $"it differs from the flushed one in blocks {DifferingBlocks(states[flushed], live)}");

        for (var pass = 0; pass < 2; pass++)
        {
            foreach (var snapshot in kept)
            {
                GenerationView view;
                try
                {
                    view = await recovered.OpenViewAsync(snapshot.Point);
                }
                catch (BlockTargetException) when (IsExpired(snapshot))
                {
                    continue; // given up for snapshot-space by the reopened cache, and said so
                }
                await using var _ = view;
                var read = new byte[Size];
                await view.ReadAsync(0, read);
                checkedSnapshots++;
                if (!snapshot.Content.AsSpan().SequenceEqual(read))
                    failures.Add($"{where}: kept snapshot of generation {snapshot.Point.Generation} (batch {snapshot.Point.Sequence}) " +
                                 $"{(pass == 0 ? "as recovered" : "after the reopened cache destaged everything")} differs in blocks {DifferingBlocks(snapshot.Content, read)}");
            }
            if (pass == 1) break;
            // The reopened destager redoes what the cut interrupted, preserving for the kept snapshots what it
            // overwrites: they must read the same afterwards, and the live volume must not change.
            await recovered.DrainAsync();
            if (state < 0) continue;
            await recovered.ReadAsync(0, live);
            if (!states[state].AsSpan().SequenceEqual(live))
                failures.Add($"{where}: after destaging, the live volume differs from what it recovered in blocks {DifferingBlocks(states[state], live)}");
        }
        return checkedSnapshots;
    }

    private static string DifferingBlocks(byte[] expected, byte[] actual) =>
        string.Join(",", Enumerable.Range(0, Blocks).Where(b => !expected.AsSpan(b * 4096, 4096).SequenceEqual(actual.AsSpan(b * 4096, 4096))).Take(12));
}
