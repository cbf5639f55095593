using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// The kept points the cache expired for snapshot-space that the host may not have recorded yet. The host learns of an
/// expiry through <see cref="WriteBackCache.PointExpired"/> and records it in its own metadata, after the destager has
/// gone on past the point without preserving its blocks: a crash in between would reopen the volume with the snapshot
/// listed as kept, and honouring it would serve the overwrites as its content. So an expiry is made durable here before
/// the step that relies on it writes the backing, and at the next open a point named kept and found here is not
/// protected but reported again (<see cref="WriteBackCache.ExpiredAtOpen"/>). Points the host no longer names kept
/// are forgotten then.
/// </summary>
/// <remarks>
/// The file is rewritten whole aside and renamed over (durably) at every change, which is rare. Layout, little-endian:
/// magic "ACEXPD01" (8), count (4), the points' batch sequence numbers (8 each), CRC32C of everything before it (4).
/// </remarks>
internal sealed class ExpiredPoints
{
    public const string FileName = "expired-points";
    private const ulong Magic = 0x3130445058454341; // "ACEXPD01" read as little-endian
    // The host records an expiry within moments of hearing of it; a node up for long keeps the newest ones only.
    private const int MaxPoints = 4096;

    private readonly ILogDirectory _directory;
    private readonly List<long> _points;

    private ExpiredPoints(ILogDirectory directory, List<long> points) => (_directory, _points) = (directory, points);

    /// <summary>The expiries saved in <paramref name="directory"/> (none when there is no file). A damaged file is an error.</summary>
    public static ExpiredPoints Load(ILogDirectory directory)
    {
        if (!directory.Exists(FileName)) return new ExpiredPoints(directory, []);
        using var file = directory.Open(FileName, FileMode.Open);
        var bytes = new byte[file.Length];
        var read = 0;
        while (read < bytes.Length && file.Read(bytes.AsSpan(read), read) is > 0 and var n) read += n;
        return new ExpiredPoints(directory, Decode(bytes.AsSpan(0, read)) ?? throw new BlockTargetException(BlockError.Io,
            $"{Path.Combine(directory.Path, FileName)} is damaged: which kept snapshots expired is unknown. Restore the volume from a replica or snapshot"));
    }

    private static List<long>? Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 16 || BinaryPrimitives.ReadUInt64LittleEndian(bytes) != Magic) return null;
        var count = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        if (count < 0 || count > MaxPoints || bytes.Length != 16 + 8 * count) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]) != Crc32C.Compute(bytes[..^4])) return null;
        var points = new List<long>(count);
        for (var i = 0; i < count; i++) points.Add(BinaryPrimitives.ReadInt64LittleEndian(bytes[(12 + 8 * i)..]));
        return points;
    }

    public IReadOnlyList<long> Points => _points;

    /// <summary>
    /// Splits the points the host names kept into those still protected and those that expired (<paramref name="expired"/>),
    /// and forgets the expiries the host no longer names (it has recorded them).
    /// </summary>
    public List<long> Sift(IEnumerable<long> kept, out List<long> expired)
    {
        var stillKept = new List<long>();
        expired = [];
        foreach (var sequence in kept)
            (_points.Contains(sequence) ? expired : stillKept).Add(sequence);
        var named = expired.ToHashSet();
        var pruned = _points.Where(named.Contains).ToList();
        if (pruned.Count < _points.Count)
        {
            try
            {
                Save(pruned);
                _points.Clear();
                _points.AddRange(pruned);
            }
            catch (BlockTargetException)
            {
                // Forgetting is only tidying: the file keeps them until a later save succeeds.
            }
        }
        return stillKept;
    }

    /// <summary>Records that <paramref name="sequence"/> expired, durably when it returns.</summary>
    public void Record(long sequence)
    {
        if (_points.Contains(sequence)) return;
        // Saved first, then kept in memory: a save that fails leaves the point out, so the step's retry records it again.
        List<long> points = [.. _points.Skip(_points.Count >= MaxPoints ? 1 : 0), sequence];
        Save(points);
        _points.Clear();
        _points.AddRange(points);
    }

    private void Save(List<long> points)
    {
        var bytes = new byte[16 + 8 * points.Count];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), points.Count);
        for (var i = 0; i < points.Count; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(12 + 8 * i), points[i]);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(^4), Crc32C.Compute(bytes.AsSpan(..^4)));
        const string temporary = FileName + ".tmp";
        try
        {
            using (var file = _directory.Open(temporary, FileMode.Create))
            {
                file.Write(bytes, 0);
                file.Sync();
            }
            _directory.Replace(temporary, FileName);
        }
        catch (IOException e)
        {
            BlockThrow.Error(BlockError.Io, $"cannot save {Path.Combine(_directory.Path, FileName)}: {e.Message}", e);
        }
    }
}
