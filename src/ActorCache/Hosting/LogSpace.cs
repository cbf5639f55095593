using ActorCache.Blocks;

namespace ActorCache.Hosting;

/// <summary>
/// Sizes the volumes' logs from the space their file system really has. Each volume may fill a log of
/// <c>cache.log-capacity</c>; when the log directory's file system cannot hold that for every volume
/// (counting the segments their logs use already as theirs; spare segment files count as space a log gives back,
/// which its medium deletes at open when they are past its share), each log gets a share of what can be held, and
/// retention (a fraction of the capacity, less in a log too small to keep any) shrinks with it. Below
/// the smallest log that works (one segment) the start is refused. A file system that fills up later
/// anyway is handled by the cache as a full log.
/// </summary>
public sealed record LogSpace(string Directory, long FreeBytes, long HeldBytes, long AskedPerVolume, IReadOnlyDictionary<string, long> Capacities)
{
    /// <summary>True when some volume's log had to be made smaller than <c>cache.log-capacity</c>.</summary>
    public bool Reduced => Capacities.Values.Any(c => c < AskedPerVolume);

    public long CapacityOf(string volume) => Capacities.TryGetValue(volume, out var capacity) ? capacity : AskedPerVolume;

    /// <param name="volumes">The volumes that have or will have a log in <see cref="CacheSettings.LogDir"/>.</param>
    public static LogSpace Plan(CacheSettings cache, IReadOnlyList<string> volumes)
    {
        var existing = NearestExistingDirectory(cache.LogDir);
        var free = NodeLibC.AvailableBytes(existing);
        if (free < 0)
            throw new SettingsException($"cannot read the free space of {existing} (for cache.log-dir {cache.LogDir}): {NodeLibC.Describe((int)-free)}");
        var held = volumes.ToDictionary(v => v, v => BytesIn(Path.Combine(cache.LogDir, v)));
        var total = free + held.Values.Sum();
        // A log keeps no more than the segments it uses: its spares are space it can give back (its medium deletes what
        // is past its capacity when it opens).
        var capacities = Share(volumes, volumes.ToDictionary(v => v, v => BytesIn(Path.Combine(cache.LogDir, v), spares: false)), total,
            cache.LogCapacity, cache.SegmentSize);
        // The smallest log that works is one segment: once it is full and destaged it is reused in place.
        var minimum = cache.SegmentSize;
        var plan = new LogSpace(cache.LogDir, free, held.Values.Sum(), cache.LogCapacity, capacities);
        if (volumes.Count > 0 && capacities.Values.Min() < minimum)
            throw new SettingsException(
                $"the log directory {cache.LogDir} is on a file system with {ByteSize.Format(Round(free))} free" +
                (plan.HeldBytes > 0 ? $" (plus {ByteSize.Format(Round(plan.HeldBytes))} the logs hold already)" : "") +
                $"; {volumes.Count} volume log(s) need at least {ByteSize.Format(minimum)} each (one segment of cache.segment-size), " +
                $"{ByteSize.Format(minimum * volumes.Count)} in all. Free space there, set cache.log-dir to a larger file system, or lower cache.segment-size");
        return plan;
    }

    /// <summary>
    /// The log of a volume added while the node runs. The running logs keep the capacities they were
    /// given and may still fill them, so the new one gets what the file system holds beyond that, in
    /// whole segments, at most <c>cache.log-capacity</c>; below one segment it is refused.
    /// </summary>
    /// <param name="running">The running volumes' log capacities, by name (a volume without a log directory counts nothing).</param>
    public static LogSpace PlanAdded(CacheSettings cache, string volume, IReadOnlyDictionary<string, long> running)
    {
        var existing = NearestExistingDirectory(cache.LogDir);
        var free = NodeLibC.AvailableBytes(existing);
        if (free < 0)
            throw new SettingsException($"cannot read the free space of {existing} (for cache.log-dir {cache.LogDir}): {NodeLibC.Describe((int)-free)}");
        var promised = running.Where(r => r.Key != volume && System.IO.Directory.Exists(Path.Combine(cache.LogDir, r.Key)))
            .Sum(r => Math.Max(0, r.Value - BytesIn(Path.Combine(cache.LogDir, r.Key))));
        var held = BytesIn(Path.Combine(cache.LogDir, volume));
        var room = Math.Max(0, free - promised) + held;
        var capacity = Math.Min(cache.LogCapacity, room / cache.SegmentSize * cache.SegmentSize);
        if (capacity < cache.SegmentSize)
            throw new SettingsException(
                $"volume {volume}: the log directory {cache.LogDir} is on a file system with {ByteSize.Format(Round(free))} free, " +
                $"{ByteSize.Format(Round(promised))} of it promised to the running volumes' logs; a log needs at least {ByteSize.Format(cache.SegmentSize)} " +
                "(one segment of cache.segment-size). Free space there, or create the volume in pass-through mode");
        return new LogSpace(cache.LogDir, free, held, cache.LogCapacity, new Dictionary<string, long> { [volume] = capacity });
    }

    /// <summary>
    /// Water-filling: each volume gets an equal share of what can be held, except that a log whose segments in use
    /// already take more than its share keeps them (it cannot give back history it has not destaged yet);
    /// shares are whole segments, at most <paramref name="asked"/>.
    /// </summary>
    internal static Dictionary<string, long> Share(IReadOnlyList<string> volumes, Dictionary<string, long> held, long total, long asked, long segment)
    {
        var capacities = new Dictionary<string, long>(StringComparer.Ordinal);
        var remaining = volumes.OrderByDescending(v => held[v]).ToList();
        while (remaining.Count > 0)
        {
            var share = total / remaining.Count;
            var biggest = remaining[0];
            var keep = Math.Min(asked, RoundUp(held[biggest], segment));
            if (held[biggest] > 0 && keep > share)
            {
                capacities[biggest] = keep;
                total -= keep;
                remaining.RemoveAt(0);
                continue;
            }
            foreach (var volume in remaining) capacities[volume] = Math.Min(asked, share / segment * segment);
            break;
        }
        return capacities;
    }

    /// <summary>Bytes the files of one volume's log take (segments are preallocated, so their length is what they hold); spare segment files too unless not asked.</summary>
    private static long BytesIn(string directory, bool spares = true)
    {
        if (!System.IO.Directory.Exists(directory)) return 0;
        return new DirectoryInfo(directory).EnumerateFiles().Where(f => spares || !f.Name.StartsWith("spare-", StringComparison.Ordinal)).Sum(f => f.Length);
    }

    /// <summary>The log directory may not exist yet (it is created when the first volume opens): ask the directory it will be made in.</summary>
    private static string NearestExistingDirectory(string path)
    {
        var directory = new DirectoryInfo(path);
        while (directory is not null && !directory.Exists) directory = directory.Parent;
        return directory?.FullName ?? "/";
    }

    private static long RoundUp(long bytes, long unit) => (bytes + unit - 1) / unit * unit;

    /// <summary>Rounded down to a whole MiB for messages.</summary>
    private static long Round(long bytes) => bytes < 1 << 20 ? bytes : bytes >> 20 << 20;
}
