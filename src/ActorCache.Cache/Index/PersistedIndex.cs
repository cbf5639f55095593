using System.Buffers.Binary;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// The index as recovery would rebuild it up to one batch of the log, kept in the file <c>index</c> of
/// the log directory so opening a volume replays only the log written after that batch (DESIGN §3:
/// open time must not grow with retained history). Written aside and renamed into place once the log is
/// durable through the batch; checked on the way back in, and any doubt (damage, another volume, a log
/// that no longer holds that batch) means a full replay instead.
/// </summary>
/// <remarks>
/// Layout, little-endian: a 128-byte header — magic "ACINDEX1" (8), version 1 (2), reserved (2), header
/// CRC32C of the other 124 bytes (4), volume id (16), address (8), sequence (8) and CRC32C of the whole
/// 4 KiB header block (4, plus 4 reserved) of the last batch covered, where the next batch is looked for
/// (8), the generation after it (8), its time (8, Unix microseconds), blocks covered (8), sync point count
/// (8), entry count (8), CRC32C of everything after the header (4), reserved — then the sync points
/// (generation, time, sequence, end address: 32 bytes each) and the entries (block, index entry: 16
/// bytes each). Only logged entries are kept: data in the log, logged trims and zeroes.
/// </remarks>
public sealed record PersistedIndex(
    Guid VolumeId, long BatchAddress, long BatchSequence, uint BatchHeaderCrc, long NextAddress, long GenerationAfter, long TimeMicros,
    long Blocks, IReadOnlyList<SyncPoint> SyncPoints, IReadOnlyList<(long Block, ulong Entry)> Entries)
{
    public const string FileName = "index";
    private const ulong Magic = 0x315845444E494341; // "ACINDEX1"
    private const int HeaderSize = 128;
    private const int SyncPointSize = 32;
    private const int EntrySize = 16;

    /// <summary>Writes the file aside, makes it durable and renames it into place (a crash leaves the old one or the new one).</summary>
    public void Save(ILogDirectory directory)
    {
        const string temporary = FileName + ".tmp";
        var body = new byte[(long)SyncPoints.Count * SyncPointSize + (long)Entries.Count * EntrySize];
        var at = 0;
        foreach (var point in SyncPoints)
        {
            var span = body.AsSpan(at, SyncPointSize);
            BinaryPrimitives.WriteInt64LittleEndian(span, point.Generation);
            BinaryPrimitives.WriteInt64LittleEndian(span[8..], point.TimeMicros);
            BinaryPrimitives.WriteInt64LittleEndian(span[16..], point.Sequence);
            BinaryPrimitives.WriteInt64LittleEndian(span[24..], point.EndAddress);
            at += SyncPointSize;
        }
        foreach (var (block, entry) in Entries)
        {
            BinaryPrimitives.WriteInt64LittleEndian(body.AsSpan(at), block);
            BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(at + 8), entry);
            at += EntrySize;
        }
        var header = new byte[HeaderSize];
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(8), 1);
        VolumeId.TryWriteBytes(header.AsSpan(16));
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(32), BatchAddress);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(40), BatchSequence);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(48), BatchHeaderCrc);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(56), NextAddress);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(64), GenerationAfter);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(72), TimeMicros);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(80), Blocks);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(88), SyncPoints.Count);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(96), Entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(104), Crc32C.Compute(body));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), HeaderCrc(header));
        using (var file = directory.Open(temporary, FileMode.Create))
        {
            file.Write(header, 0);
            file.Write(body, HeaderSize);
            file.Sync();
        }
        directory.Replace(temporary, FileName);
    }

    private static uint HeaderCrc(ReadOnlySpan<byte> header) => ~Crc32C.Append(Crc32C.Append(0xFFFFFFFFu, header[..12]), header[16..]);

    /// <summary>The persisted index of volume <paramref name="volumeId"/>, or null with the reason (null too when there is no file: a first open or an old log).</summary>
    public static PersistedIndex? TryLoad(ILogDirectory directory, Guid volumeId, out string? problem)
    {
        problem = null;
        if (!directory.Exists(FileName)) return null;
        byte[] bytes;
        try
        {
            using var file = directory.Open(FileName, FileMode.Open);
            if (file.Length is < HeaderSize or > int.MaxValue) return Fail(out problem, $"it is {file.Length} bytes long");
            bytes = new byte[file.Length];
            var read = 0;
            while (read < bytes.Length)
            {
                var n = file.Read(bytes.AsSpan(read), read);
                if (n == 0) break;
                read += n;
            }
            if (read < bytes.Length) return Fail(out problem, "it ends early");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or BlockTargetException)
        {
            // Only a shortcut: the log and the checkpoint are what the volume is made of, and a full replay reads them.
            return Fail(out problem, $"it cannot be read: {e.Message}");
        }
        var header = bytes.AsSpan(0, HeaderSize);
        if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(header[8..]) != 1 ||
            BinaryPrimitives.ReadUInt32LittleEndian(header[12..]) != HeaderCrc(header))
            return Fail(out problem, "its header is damaged");
        if (new Guid(header[16..32]) != volumeId) return Fail(out problem, "it belongs to another log");
        var points = BinaryPrimitives.ReadInt64LittleEndian(header[88..]);
        var entries = BinaryPrimitives.ReadInt64LittleEndian(header[96..]);
        if (points < 0 || entries < 0 || HeaderSize + points * SyncPointSize + entries * EntrySize != bytes.Length)
            return Fail(out problem, "its length does not match its header");
        var body = bytes.AsSpan(HeaderSize);
        if (Crc32C.Compute(body) != BinaryPrimitives.ReadUInt32LittleEndian(header[104..])) return Fail(out problem, "its contents are damaged (checksum)");
        var syncPoints = new SyncPoint[points];
        for (var i = 0; i < points; i++)
        {
            var span = body.Slice(i * SyncPointSize, SyncPointSize);
            syncPoints[i] = new SyncPoint(BinaryPrimitives.ReadInt64LittleEndian(span), BinaryPrimitives.ReadInt64LittleEndian(span[8..]),
                BinaryPrimitives.ReadInt64LittleEndian(span[16..]), BinaryPrimitives.ReadInt64LittleEndian(span[24..]));
        }
        var list = new (long, ulong)[entries];
        var offset = (int)(points * SyncPointSize);
        for (var i = 0; i < entries; i++, offset += EntrySize)
            list[i] = (BinaryPrimitives.ReadInt64LittleEndian(body[offset..]), BinaryPrimitives.ReadUInt64LittleEndian(body[(offset + 8)..]));
        return new PersistedIndex(volumeId, BinaryPrimitives.ReadInt64LittleEndian(header[32..]), BinaryPrimitives.ReadInt64LittleEndian(header[40..]),
            BinaryPrimitives.ReadUInt32LittleEndian(header[48..]), BinaryPrimitives.ReadInt64LittleEndian(header[56..]),
            BinaryPrimitives.ReadInt64LittleEndian(header[64..]), BinaryPrimitives.ReadInt64LittleEndian(header[72..]),
            BinaryPrimitives.ReadInt64LittleEndian(header[80..]), syncPoints, list);
    }

    private static PersistedIndex? Fail(out string? problem, string why)
    {
        problem = $"the persisted index ({FileName} in the log directory) is unusable: {why}";
        return null;
    }

    /// <summary>CRC32C of the 4 KiB header block at <paramref name="address"/>, or null when it cannot be read (a released segment).</summary>
    public static uint? HeaderBlockCrc(ILogMedium medium, long address)
    {
        Span<byte> block = stackalloc byte[LogFormat.BlockSize];
        return medium.TryRead(address, block) ? Crc32C.Compute(block) : null;
    }
}
