using System.Text.Json;
using ActorCache.Blocks;

namespace ActorCache.Replication;

/// <summary>
/// A secondary's own persisted replica state (<c>replica-state.json</c> in its state directory), read by
/// the control plane to decide promotion. <see cref="AppliedSequence"/> is the highest primary batch
/// sequence the secondary has durably (it is written on every disk-state change and at most once a second
/// while batches stream, so it may trail the truth by a second; never lead it).
/// </summary>
public sealed record ReplicaState(PeerDisk Disk, long AppliedSequence, Guid PrimaryVolumeId, DateTimeOffset Updated)
{
    public const string FileName = "replica-state.json";

    /// <summary>The state in <paramref name="directory"/>, or null when there is none (a replica that never received anything).</summary>
    public static ReplicaState? Read(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = document.RootElement;
            return new ReplicaState(
                Enum.Parse<PeerDisk>(root.GetProperty("disk").GetString()!, ignoreCase: true),
                root.GetProperty("appliedSequence").GetInt64(),
                root.GetProperty("primaryVolumeId").GetGuid(),
                root.GetProperty("updated").GetDateTimeOffset());
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
            json.WriteEndObject();
        }
        AtomicFile.Replace(path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
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
