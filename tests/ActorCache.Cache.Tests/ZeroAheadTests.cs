using System.Diagnostics;
using ActorCache.Blocks;

namespace ActorCache.Cache.Tests;

/// <summary>
/// After a commit into a segment whose file is only reserved ahead of the tail (a fresh, fallocated file; a
/// recycled one past where its earlier life ended; the one a restarted node appends to), the medium writes
/// zeroes ahead of the tail on a thread of its own, so later commits there fdatasync data only. Those zeroes race with the flusher's
/// appends: they must never land where a record was written, and they must really turn the reserved
/// space ahead into written extents.
/// </summary>
public sealed class ZeroAheadTests : IDisposable
{
    private const int BlockSize = LogFormat.BlockSize;
    private readonly string _directory = Path.Combine(Path.GetTempPath(), $"actorcache-zero-ahead-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public void Zeroes_ahead_never_overwrite_what_the_log_wrote()
    {
        const long segmentSize = 4 << 20;
        var random = new Random(11);
        var written = new List<(long Address, byte[] Data)>();
        long tail = 0;
        using (var medium = new SegmentFiles(_directory, segmentSize))
        {
            // Appends of 1-16 blocks, a commit asking for zeroes ahead after most of them, over several
            // fresh segments: the zero-ahead thread works right behind (and sometimes past) the tail.
            for (var i = 0; i < 3000; i++)
            {
                var size = random.Next(1, 17) * BlockSize;
                if (tail / segmentSize != (tail + size - 1) / segmentSize) tail = (tail / segmentSize + 1) * segmentSize;
                var data = new byte[size];
                random.NextBytes(data);
                medium.Write(tail, [data]);
                written.Add((tail, data));
                tail += size;
                if (i % 7 == 0) medium.Sync();
                if (i % 3 != 0) medium.PrepareAhead(tail);
                if (i % 50 == 0) Thread.Sleep(1); // let the zero-ahead thread catch up and run into the appends
            }
            medium.Sync();

            foreach (var (address, data) in written)
            {
                var back = new byte[data.Length];
                Assert.True(medium.TryRead(address, back));
                Assert.True(data.AsSpan().SequenceEqual(back), $"the record at {address} ({data.Length} bytes) was overwritten");
            }
            var past = new byte[segmentSize - tail % segmentSize];
            Assert.True(medium.TryRead(tail, past));
            Assert.True(past.AsSpan().IndexOfAnyExcept((byte)0) < 0, "past the tail the segment reads as zeroes");
        }
    }

    [Fact]
    public void A_commit_into_a_fresh_segment_leaves_written_extents_ahead_of_its_tail()
    {
        const long segmentSize = 16 << 20;
        using var medium = new SegmentFiles(_directory, segmentSize);
        medium.Write(0, [new byte[2 * BlockSize]]);
        medium.Sync();
        var file = Path.Combine(_directory, "segment-0000000000.log");
        Assert.True(UnwrittenBytes(file, 2 * BlockSize, 1 << 20) > 0,
            "a fallocated segment starts with unwritten extents (the temporary directory's file system must be ext4 or xfs for this test)");

        medium.PrepareAhead(2 * BlockSize);
        var deadline = Stopwatch.StartNew();
        while (UnwrittenBytes(file, 2 * BlockSize, SegmentFiles.ZeroAheadBytes) > 0 && deadline.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(20);
        Assert.Equal(0, UnwrittenBytes(file, 2 * BlockSize, SegmentFiles.ZeroAheadBytes));
        Assert.True(UnwrittenBytes(file, SegmentFiles.ZeroAheadBytes + 2 * BlockSize, 4 << 20) > 0, "zeroes go only so far ahead");
    }

    [Fact]
    public void The_segment_a_restarted_node_goes_on_appending_to_gets_zeroes_ahead_of_its_tail()
    {
        const long segmentSize = 16 << 20;
        using (var before = new SegmentFiles(_directory, segmentSize))
        {
            before.Write(0, [new byte[2 * BlockSize]]);
            before.Sync();
        }
        var file = Path.Combine(_directory, "segment-0000000000.log");
        using var medium = new SegmentFiles(_directory, segmentSize);
        medium.Write(2 * BlockSize, [new byte[BlockSize]]);
        medium.Sync();
        Assert.True(UnwrittenBytes(file, 3 * BlockSize, 1 << 20) > 0, "the segment's file is only reserved past its tail");

        medium.PrepareAhead(3 * BlockSize);
        WaitWritten(file, 3 * BlockSize, SegmentFiles.ZeroAheadBytes);
    }

    [Fact]
    public void A_recycled_segment_gets_zeroes_ahead_past_where_its_earlier_life_ended()
    {
        // Its earlier life ended after 1 MiB (the next batch did not fit and went to the next segment): the rest is only reserved.
        const long segmentSize = 16 << 20;
        using var medium = new SegmentFiles(_directory, segmentSize);
        medium.Write(0, [new byte[1 << 20]]);
        medium.Write(segmentSize, [new byte[BlockSize]]);
        medium.Sync();
        medium.Release(0);
        Assert.Equal(1, medium.SpareCount);

        var address = 2 * segmentSize; // the spare, renamed into place
        medium.Write(address, [new byte[256 << 10]]);
        medium.Sync();
        Assert.Equal(0, medium.SpareCount);
        var file = Path.Combine(_directory, "segment-0000000002.log");
        Assert.True(UnwrittenBytes(file, 1 << 20, 1 << 20) > 0, "past its earlier life the recycled file is only reserved");

        medium.PrepareAhead(address + (256 << 10));
        WaitWritten(file, 256 << 10, SegmentFiles.ZeroAheadBytes);
    }

    private static void WaitWritten(string file, long from, long length)
    {
        var deadline = Stopwatch.StartNew();
        while (UnwrittenBytes(file, from, length) > 0 && deadline.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(20);
        Assert.Equal(0, UnwrittenBytes(file, from, length));
    }

    [Fact]
    public void An_fdatasync_error_seen_while_zeroing_ahead_fails_the_logs_next_sync()
    {
        // Linux reports a write-back error once per open file: if the zero-ahead's fdatasync gets it, the
        // flusher's own fdatasync may then succeed although its last batch never reached the disk.
        using var medium = new SegmentFiles(_directory, 16 << 20);
        medium.ZeroAheadSync = _ => LibC.EIO;
        medium.Write(0, [new byte[2 * BlockSize]]);
        medium.Sync();
        medium.PrepareAhead(2 * BlockSize);
        BlockTargetException? failure = null;
        var deadline = Stopwatch.StartNew();
        for (var address = 2L * BlockSize; failure is null && deadline.Elapsed < TimeSpan.FromSeconds(30); address += BlockSize)
        {
            Thread.Sleep(10);
            medium.Write(address, [new byte[BlockSize]]);
            try
            {
                medium.Sync();
            }
            catch (BlockTargetException e)
            {
                failure = e;
            }
        }
        Assert.NotNull(failure);
        Assert.Contains("zeroing ahead", failure.Message);
    }

    [Fact]
    public async Task A_sync_that_ends_while_the_zero_aheads_fdatasync_runs_waits_for_what_it_saw()
    {
        // The zero-ahead's fdatasync took the file's write-back error; the flusher's own, just after, returned 0. The flusher's
        // Sync must not report success before the zero-ahead has stored the error.
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var medium = new SegmentFiles(_directory, 16 << 20);
        medium.ZeroAheadSync = _ =>
        {
            entered.Set();
            release.Wait(TimeSpan.FromSeconds(30));
            return LibC.EIO;
        };
        medium.Write(0, [new byte[2 * BlockSize]]);
        medium.Sync();
        medium.PrepareAhead(2 * BlockSize);
        Assert.True(entered.Wait(TimeSpan.FromSeconds(30)), "the zero-ahead did not sync");
        medium.Write(2 * BlockSize, [new byte[BlockSize]]);
        var sync = Task.Run(medium.Sync);
        Assert.NotSame(sync, await Task.WhenAny(sync, Task.Delay(300))); // "Sync returned while the zero-ahead's fdatasync was still running"
        release.Set();
        var failure = await Assert.ThrowsAsync<BlockTargetException>(() => sync.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("zeroing ahead", failure.Message);
    }

    /// <summary>Bytes of [from, from + length) in unwritten (reserved, never written) extents, from filefrag's FIEMAP listing.</summary>
    private static long UnwrittenBytes(string file, long from, long length)
    {
        var info = new ProcessStartInfo("filefrag", ["-v", "-b4096", file]) { RedirectStandardOutput = true };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(0, process.ExitCode);
        long unwritten = 0;
        // Lines like "   0:        0..     511:    1234..    1745:    512:             unwritten"
        foreach (var line in output.Split('\n'))
        {
            var parts = line.Split(':', StringSplitOptions.TrimEntries);
            if (parts.Length < 4 || !int.TryParse(parts[0], out _) || !line.Contains("unwritten")) continue;
            var range = parts[1].Split("..", StringSplitOptions.TrimEntries);
            var start = long.Parse(range[0]) * BlockSize;
            var end = (long.Parse(range[1]) + 1) * BlockSize;
            unwritten += Math.Max(0, Math.Min(end, from + length) - Math.Max(start, from));
        }
        return unwritten;
    }
}
