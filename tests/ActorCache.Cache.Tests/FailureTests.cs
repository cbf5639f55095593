using System.Diagnostics;
using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>A full log disk and a failing backing: clear errors, nothing acknowledged lost, recovery when the fault goes.</summary>
public sealed class FailureTests : IDisposable
{
    private const long Size = 16 << 20;
    private readonly CacheFixture _fixture = new();

    public void Dispose()
    {
        Run("umount", _fixture.LogDirectory);
        _fixture.Dispose();
    }

    private static void Run(string file, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        process.WaitForExit();
    }

    /// <summary>The log on its own small tmpfs, so it fills up for real (ENOSPC from fallocate).</summary>
    private void MountSmallLogDisk(string size)
    {
        Directory.CreateDirectory(_fixture.LogDirectory);
        using var mount = Process.Start("mount", ["-t", "tmpfs", "-o", $"size={size}", "tmpfs", _fixture.LogDirectory])!;
        mount.WaitForExit();
        Assert.True(mount.ExitCode == 0, "mounting a tmpfs for the log needs root");
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>
    /// A log file system smaller than the log's capacity (issue: writes hung, then a stop dropped them):
    /// the full file system is treated like a full log. The log is capped at what it holds, retention
    /// shrinks and destaging makes room, so writes complete. With the fail policy a FLUSH that meets the
    /// full log fails with ENOSPC, and works again once destaging has made room.
    /// </summary>
    [Theory]
    [InlineData(LogFullPolicy.Fail)]
    [InlineData(LogFullPolicy.Wait)]
    public async Task A_log_file_system_smaller_than_the_log_is_treated_as_a_full_log_and_loses_nothing(LogFullPolicy policy)
    {
        MountSmallLogDisk("3m");
        var options = _fixture.Options() with { LogFullPolicy = policy };
        var first = Pattern(6 << 20, 1);
        var second = Pattern(6 << 20, 2);
        await using (var cache = _fixture.Open(Size, options))
        {
            await WriteAsync(cache, 0, first, policy); // acknowledged from the ring
            await FlushAsync(cache, policy);
            await WriteAsync(cache, 8 << 20, second, policy);
            await FlushAsync(cache, policy);
            var statistics = cache.Statistics;
            Assert.True(statistics.RetentionShrinks > 0, "retention never shrank although the log's file system was full");
            Assert.True(statistics.LogCapacity < options.LogCapacity, "the log was not capped at what its file system holds");
            var read = new byte[first.Length];
            await cache.ReadAsync(0, read);
            Assert.Equal(first, read);
        }
        await using (var cache = _fixture.Open(Size, options))
        {
            var read = new byte[first.Length];
            await cache.ReadAsync(0, read);
            Assert.Equal(first, read);
            await cache.ReadAsync(8 << 20, read);
            Assert.Equal(second, read);
        }
    }

    /// <summary>With policy wait a FLUSH waits for room; with fail it fails with ENOSPC while the log is full, and is retried.</summary>
    private static Task FlushAsync(WriteBackCache cache, LogFullPolicy policy) =>
        RetryWhileFullAsync(() => cache.FlushAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)), policy);

    private static Task WriteAsync(WriteBackCache cache, long offset, byte[] data, LogFullPolicy policy) =>
        RetryWhileFullAsync(() => cache.WriteAsync(offset, data, fua: false).AsTask(), policy);

    private static async Task RetryWhileFullAsync(Func<Task> operation, LogFullPolicy policy)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                await operation();
                return;
            }
            catch (BlockTargetException e) when (policy == LogFullPolicy.Fail && e.Error == BlockError.NoSpace && DateTime.UtcNow < deadline)
            {
                Assert.Contains("No space left", e.Message);
                await Task.Delay(50);
            }
        }
    }

    [Fact]
    public async Task A_failing_backing_degrades_the_volume_but_keeps_data_in_the_log_and_served()
    {
        var faulty = new FaultyTarget(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        var data = Pattern(1 << 20, 2);
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.Zero), backing: faulty);
        faulty.FailWrites = true;
        await cache.WriteAsync(0, data, fua: false);
        await cache.FlushAsync(); // durable in the log: the backing is not needed for that
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (cache.Statistics.BackingFailure is null && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Contains("injected I/O error", cache.Statistics.BackingFailure);
        Assert.Equal(256, cache.Index.CachedBlocks);
        var read = new byte[data.Length];
        await cache.ReadAsync(0, read);
        Assert.Equal(data, read);

        faulty.FailWrites = false;
        deadline = DateTime.UtcNow.AddSeconds(20);
        while ((cache.Index.CachedBlocks > 0 || cache.Statistics.BackingFailure is not null) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Equal(0, cache.Index.CachedBlocks);
        Assert.Null(cache.Statistics.BackingFailure);
        await using var raw = FileBacking.Open(_fixture.BackingPath, Size, create: false, readOnly: true);
        await raw.ReadAsync(0, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public async Task A_drain_that_fails_on_the_backing_is_given_up_and_retention_applies_again()
    {
        var faulty = new FaultyTarget(FileBacking.Open(_fixture.BackingPath, Size, create: true));
        await using var cache = _fixture.Open(Size, _fixture.Options(retention: TimeSpan.FromHours(1)), backing: faulty);
        await cache.WriteAsync(0, Pattern(1 << 20, 3), fua: false);
        faulty.FailWrites = true;
        var failed = await Assert.ThrowsAsync<BlockTargetException>(() => cache.SetModeAsync(CacheMode.WriteThrough));
        Assert.Contains("cannot drain", failed.Message);

        // The backing heals; the history is inside its retention window, so nothing may be destaged now.
        faulty.FailWrites = false;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (cache.Statistics.BackingFailure is not null && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Null(cache.Statistics.BackingFailure);
        await Task.Delay(500); // destage ticks every 20 ms
        Assert.Equal(256, cache.Index.CachedBlocks);
    }
}

/// <summary>A log slower than the writers: the ring fills, writers wait for the flusher, nothing is dropped and nothing deadlocks.</summary>
public sealed class BackpressureTests : IDisposable
{
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private sealed class SlowMedium(ILogMedium inner) : WrappedMedium(inner)
    {
        public override void Write(long address, IReadOnlyList<ReadOnlyMemory<byte>> buffers)
        {
            Thread.Sleep(2);
            base.Write(address, buffers);
        }
    }

    [Fact]
    public async Task Writers_wait_for_ring_space_and_every_write_lands()
    {
        const long size = 256L << 20; // four times the ring
        var options = _fixture.Options(segmentSize: 4 << 20, capacity: 1L << 30);
        var ring = new RingBuffer(64L << 20); // private: the other tests' volumes must not make room for us
        await using var cache = _fixture.Open(size, options, medium: new SlowMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize)), ring: ring);
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var chunk = new byte[1 << 20];
            for (var i = 0; i < 64; i++)
            {
                chunk.AsSpan().Fill((byte)(w * 64 + i));
                await cache.WriteAsync((w * 64L + i) << 20, chunk, fua: false);
            }
        }));
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(2));
        await cache.FlushAsync();
        Assert.True(cache.Statistics.RingWaits > 0, "the ring never filled: the test does not exercise backpressure");
        var read = new byte[1 << 20];
        for (var i = 0; i < 256; i += 17)
        {
            await cache.ReadAsync((long)i << 20, read);
            Assert.True(read.AsSpan().IndexOfAnyExcept((byte)i) < 0, $"chunk {i} is not what was written");
        }
    }
    [Fact]
    public async Task A_large_write_is_not_starved_by_small_writers_on_a_full_ring()
    {
        var options = _fixture.Options(segmentSize: 4 << 20, capacity: 1L << 30) with { RingWaitTimeout = TimeSpan.FromSeconds(15) };
        var ring = new RingBuffer(64L << 20);
        await using var cache = _fixture.Open(256L << 20, options, medium: new SlowMedium(new SegmentFiles(options.LogDirectory, options.SegmentSize)), ring: ring);
        using var stop = new CancellationTokenSource();
        var smallWrites = 0L;
        // 32 4 KiB writers (a QD32 client) keep the volume's share of the ring full: each batch the slow log frees is taken again at once.
        var writers = Enumerable.Range(0, 32).Select(w => Task.Run(async () =>
        {
            var block = new byte[4096];
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                await cache.WriteAsync(((w * 1024L) + i % 1024) << 12, block, fua: false);
                Interlocked.Increment(ref smallWrites);
            }
        })).ToArray();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        // Filled up to the volume's share of it (three quarters: RingBuffer.MaxSlotsPerLine).
        var full = ring.SlotCount - ring.MaxSlotsPerLine + ring.SlotCount / 8;
        while (ring.FreeSlots > full && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.True(ring.FreeSlots <= full, "the small writers never filled the volume's share of the ring: the test exercises nothing");

        var large = CacheFixture.Pattern(32 << 20, 5); // the largest NBD write: 8,192 slots, half this ring
        await cache.WriteAsync(192L << 20, large, fua: false); // starved (ENOSPC after 15 s) without the ring's head of the line
        var afterLarge = Interlocked.Read(ref smallWrites);
        // They go on as the flusher frees slots (a slow log here): waited for, not assumed within a fixed while.
        for (var waited = 0; Interlocked.Read(ref smallWrites) <= afterLarge && waited < 300; waited++) await Task.Delay(100);
        Assert.True(Interlocked.Read(ref smallWrites) > afterLarge, "the small writers go on after the large write");
        stop.Cancel();
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(30));
        var read = new byte[large.Length];
        await cache.ReadAsync(192L << 20, read);
        Assert.True(read.AsSpan().SequenceEqual(large));
    }
}

/// <summary>
/// Two volumes on one ring, one of whose logs stalls: its acknowledged writes stay in the ring, but at most its share of
/// it, so the other volume's writes go on.
/// </summary>
public sealed class RingShareTests : IDisposable
{
    private readonly CacheFixture _stalledFixture = new();
    private readonly CacheFixture _otherFixture = new();

    public void Dispose()
    {
        _stalledFixture.Dispose();
        _otherFixture.Dispose();
    }

    [Fact]
    public async Task A_volume_whose_log_stalls_leaves_a_quarter_of_the_ring_to_the_others()
    {
        var ring = new RingBuffer(64L << 20);
        var stalledOptions = _stalledFixture.Options(segmentSize: 4 << 20, capacity: 1L << 30);
        var gate = GatedMedium.Over(stalledOptions);
        await using var stalled = _stalledFixture.Open(128L << 20, stalledOptions, medium: gate, ring: ring);
        await using var other = _otherFixture.Open(64L << 20, _otherFixture.Options(segmentSize: 4 << 20, capacity: 1L << 30), ring: ring);

        gate.Gated = true; // the stalled volume's first log write waits at the gate, and every write after it in the ring
        var chunk = CacheFixture.Pattern(1 << 20, 3);
        var written = 0;
        var writer = Task.Run(async () =>
        {
            for (var i = 0; i < 120; i++) // 120 MiB: more than the whole ring
            {
                await stalled.WriteAsync((long)i << 20, chunk, fua: false);
                Interlocked.Increment(ref written);
            }
        });
        await gate.Entered.WaitAsync(TimeSpan.FromSeconds(10));
        // Down to the quarter first (a writer the machine held back for a second would look settled too early), then quiet.
        for (var deadline = DateTime.UtcNow.AddSeconds(30); ring.FreeSlots > ring.SlotCount / 4 + 256 && DateTime.UtcNow < deadline;)
            await Task.Delay(50);
        for (var settled = 0; settled < 10; settled++)
        {
            var before = Volatile.Read(ref written);
            await Task.Delay(100);
            if (Volatile.Read(ref written) != before) settled = 0;
        }
        Assert.False(writer.IsCompleted, "the stalled volume's writes never waited for ring space: the test exercises nothing");
        Assert.InRange(ring.FreeSlots, ring.SlotCount / 4 - 256, ring.SlotCount / 4 + 256);

        // The other volume takes 8 MiB with FUA at once; without the share it waited for the ring and failed with ENOSPC.
        var data = CacheFixture.Pattern(8 << 20, 9);
        await other.WriteAsync(0, data, fua: true).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        var read = new byte[data.Length];
        await other.ReadAsync(0, read);
        Assert.True(read.AsSpan().SequenceEqual(data));

        // The log comes back: the stalled volume's writes go on, and all of them read back.
        gate.Gated = false;
        gate.Open.Release();
        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        var back = new byte[chunk.Length];
        await stalled.ReadAsync(119L << 20, back);
        Assert.True(back.AsSpan().SequenceEqual(chunk));
    }
}

/// <summary>
/// A log of a single segment (what the node sizes a log to on a file system with room for one): a batch
/// that does not fit in the rest of the segment seals it; once everything before is destaged, the
/// horizon moves to the seal and the segment is reused, whatever the sizes.
/// </summary>
public sealed class OneSegmentLogTests : IDisposable
{
    private readonly CacheFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    [Fact]
    public async Task A_batch_larger_than_the_rest_of_the_only_segment_waits_for_destaging_not_forever()
    {
        var options = _fixture.Options(retention: TimeSpan.Zero, segmentSize: 64 << 10, capacity: 64 << 10) with { MaxBatchBlocks = 15 };
        await using var cache = _fixture.Open(4 << 20, options);
        for (var round = 0; round < 6; round++)
        {
            await cache.WriteAsync(0, CacheFixture.Pattern(5 * 4096, round), fua: true); // a 24 KiB batch
            await cache.WriteAsync(1 << 20, CacheFixture.Pattern(15 * 4096, 100 + round), fua: true).AsTask().WaitAsync(TimeSpan.FromSeconds(20)); // 64 KiB: the whole segment
        }
        var read = new byte[15 * 4096];
        await cache.ReadAsync(1 << 20, read);
        Assert.Equal(CacheFixture.Pattern(15 * 4096, 105), read);
    }
}
