using System.Text.Json;
using ActorCache.Blocks;

namespace ActorCache.Replication;

/// <summary>
/// A secondary's own persisted replica state (<c>replica-state.json</c> in its state directory), read by
/// the control plane to decide promotion. <see cref="AppliedSequence"/> is the highest primary batch
/// sequence the secondary has durably (it is written on every disk-state change and at most once a second
/// while batches stream, so it may trail the truth by a second; never lead it). <see cref="Checkpoints"/> map the
/// primary's batches to this replica's own log (see <see cref="HistoryCheckpoint"/>): what a resync after a failover
/// narrows itself with.
/// </summary>
public sealed record ReplicaState(PeerDisk Disk, long AppliedSequence, Guid PrimaryVolumeId, DateTimeOffset Updated)
{
    public const string FileName = "replica-state.json";

    /// <summary>Oldest first; empty when the replica kept none for this primary (it was resynced since, or never UpToDate).</summary>
    public IReadOnlyList<HistoryCheckpoint> Checkpoints { get; init; } = [];

    /// <summary>
    /// The primary's incarnation (an id it draws each time its volume opens) whose batch numbers the checkpoints use: a
    /// primary that crashed may number new batches as it numbered lost ones. Empty: unknown (an older primary).
    /// </summary>
    public Guid PrimaryIncarnation { get; init; }

    /// <summary>This replica's own log (its cache's volume id) the checkpoints' local batches are in.</summary>
    public Guid LocalVolumeId { get; init; }

    /// <summary>The state in <paramref name="directory"/>, or null when there is none (a replica that never received anything).</summary>
    public static ReplicaState? Read(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = document.RootElement;
            var checkpoints = new List<HistoryCheckpoint>();
            if (root.TryGetProperty("checkpoints", out var list))
                foreach (var pair in list.EnumerateArray()) checkpoints.Add(new HistoryCheckpoint(pair[0].GetInt64(), pair[1].GetInt64()));
            return new ReplicaState(
                Enum.Parse<PeerDisk>(root.GetProperty("disk").GetString()!, ignoreCase: true),
                root.GetProperty("appliedSequence").GetInt64(),
                root.GetProperty("primaryVolumeId").GetGuid(),
                root.GetProperty("updated").GetDateTimeOffset())
            {
                Checkpoints = checkpoints,
                PrimaryIncarnation = root.TryGetProperty("primaryIncarnation", out var incarnation) ? incarnation.GetGuid() : Guid.Empty,
                LocalVolumeId = root.TryGetProperty("localVolumeId", out var local) ? local.GetGuid() : Guid.Empty,
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or ArgumentException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"the replica state {path} is damaged ({e.Message}); the replica must be fully resynced: delete the file", e);
        }
    }

    /// <summary>Replaces the state atomically: written aside, fsynced, renamed over the old one, the directory fsynced.</summary>
    public void Write(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("disk", Disk.ToString());
            json.WriteNumber("appliedSequence", AppliedSequence);
            json.WriteString("primaryVolumeId", PrimaryVolumeId);
            json.WriteString("updated", Updated);
            json.WriteString("primaryIncarnation", PrimaryIncarnation);
            json.WriteString("localVolumeId", LocalVolumeId);
            json.WriteStartArray("checkpoints");
            foreach (var checkpoint in Checkpoints)
            {
                json.WriteStartArray();
                json.WriteNumberValue(checkpoint.PrimarySequence);
                json.WriteNumberValue(checkpoint.LocalSequence);
                json.WriteEndArray();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        AtomicFile.Replace(path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

}

/// <summary>
/// One point of a secondary's history: after the primary's batch <see cref="PrimarySequence"/> was applied here, every
/// later write landed in this replica's own log after its batch <see cref="LocalSequence"/> (the last one durable then).
/// Taken only while the replica is UpToDate, so its data then was the primary's at that batch.
/// </summary>
public readonly record struct HistoryCheckpoint(long PrimarySequence, long LocalSequence)
{
    /// <summary>How many a state file keeps: the newest densely, older ones thinned out (so a long-lagging peer still finds one).</summary>
    public const int Kept = 64;

    /// <summary><paramref name="list"/> with <paramref name="added"/> at its end, thinned to <see cref="Kept"/>: every other one of the older half goes.</summary>
    public static IReadOnlyList<HistoryCheckpoint> Append(IReadOnlyList<HistoryCheckpoint> list, HistoryCheckpoint added)
    {
        if (list.Count > 0 && list[^1].PrimarySequence >= added.PrimarySequence) return list;
        return Thin(new List<HistoryCheckpoint>(list) { added });
    }

    /// <summary>
    /// <paramref name="list"/> and <paramref name="more"/> in one list in order of the primary's batches, thinned as above. Of two for
    /// the same batch the later local batch stays: both are right, it is the tighter.
    /// </summary>
    public static IReadOnlyList<HistoryCheckpoint> Merge(IReadOnlyList<HistoryCheckpoint> list, IEnumerable<HistoryCheckpoint> more) =>
        Thin([.. list.Concat(more).GroupBy(c => c.PrimarySequence).Select(g => g.MaxBy(c => c.LocalSequence)).OrderBy(c => c.PrimarySequence)]);

    private static List<HistoryCheckpoint> Thin(List<HistoryCheckpoint> list)
    {
        while (list.Count > Kept)
        {
            var half = list.Count / 2;
            var thinned = new List<HistoryCheckpoint>(Kept);
            for (var i = 0; i < half; i++)
                if (i % 2 == 0) thinned.Add(list[i]);
            thinned.AddRange(list.Skip(half));
            list = thinned;
        }
        return list;
    }
}

/// <summary>Replaces a small file atomically and durably: tmp + fsync + rename + directory fsync.</summary>
internal static class AtomicFile
{
    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        var temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(content);
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var errno = LibC.SyncDirectory(directory);
        if (errno != 0) throw new IOException($"fsync of directory {directory} failed (errno {errno}) after replacing {path}");
    }
}
