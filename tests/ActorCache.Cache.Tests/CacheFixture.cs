using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Cache.Tests;

/// <summary>A cache over a real sparse-file backing and a real log directory in a temporary folder.</summary>
public sealed class CacheFixture : IDisposable
{
    public static readonly RingBuffer SharedRing = new(64L << 20);

    /// <summary>Hosts the flusher, destager and extent actors of every cache the tests open.</summary>
    public static readonly ActorSystem Actors = ActorSystem.Create("cache-tests", CacheDispatchers.Hocon);

    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("actorcache-cache-").FullName;
    public string BackingPath => Path.Combine(Directory, "backing.img");
    public string LogDirectory => Path.Combine(Directory, "log");

    public CacheOptions Options(TimeSpan? retention = null, long segmentSize = 1 << 20, long capacity = 256L << 20) => new()
    {
        LogDirectory = LogDirectory,
        SegmentSize = segmentSize,
        LogCapacity = capacity,
        RetentionTime = retention ?? TimeSpan.FromHours(1),
        MaxBatchBlocks = (int)Math.Min(64, segmentSize / 4096 - 1),
        DestageInterval = TimeSpan.FromMilliseconds(20),
        RingWaitTimeout = TimeSpan.FromSeconds(20),
    };

    public WriteBackCache Open(long size, CacheOptions? options = null, CacheMode mode = CacheMode.WriteBack, ILogMedium? medium = null,
        IBlockTarget? backing = null, RingBuffer? ring = null, IEnumerable<long>? kept = null, ILogDirectory? directory = null, Func<long, bool>? pinned = null) =>
        WriteBackCache.Open("test", backing ?? FileBacking.Open(BackingPath, size, create: !File.Exists(BackingPath)), ring ?? SharedRing,
            options ?? Options(), mode, NullLogger.Instance, Actors, medium: medium, kept: kept, directory: directory, pinned: pinned);

    /// <summary>Damages the log as a medium would: flips the bits of <paramref name="mask"/> in the byte at log address <paramref name="address"/>.</summary>
    public static void FlipLogByte(CacheOptions options, long address, int mask)
    {
        using var file = File.Open(Path.Combine(options.LogDirectory, $"segment-{address / options.SegmentSize:D10}.log"), FileMode.Open);
        file.Position = address % options.SegmentSize;
        var b = file.ReadByte();
        file.Position = address % options.SegmentSize;
        file.WriteByte((byte)(b ^ mask));
    }

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Writes the way the NBD front does for whole blocks: stage, fill the target's memory, commit.</summary>
    public static async Task StagedWriteAsync(IBlockTarget target, long offset, byte[] data, bool fua)
    {
        var staged = new StagedWrite();
        Assert.True(await target.TryStageWriteAsync(offset, data.Length, staged), "a whole-block write in write-back mode is staged");
        var filled = 0;
        for (var i = 0; i < staged.SegmentCount; i++)
        {
            data.AsSpan(filled, staged.Segment(i).Length).CopyTo(staged.Segment(i).Span);
            filled += staged.Segment(i).Length;
        }
        Assert.Equal(data.Length, filled);
        await target.CommitStagedWriteAsync(staged, fua);
    }

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
