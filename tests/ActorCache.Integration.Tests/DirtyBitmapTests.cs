using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Incremental backup's question, asked with qemu's tools: which blocks changed since point A? The
/// context <c>qemu:dirty-bitmap:A</c> on the live volume or on a view of its past answers it, read by the
/// real <c>nbdinfo --map</c> and <c>nbdsh</c>: every block written after A is dirty, every other clean.
/// </summary>
public sealed class DirtyBitmapTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Fact]
    public async Task Nbdinfo_maps_the_blocks_written_since_a_point_as_dirty_and_the_rest_clean()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M");
        var pattern = Path.Combine(_dataDir, "pattern.img");
        await File.WriteAllBytesAsync(pattern, Tool.RandomBytes(4 << 20, 1));
        await Tool.CheckAsync("nbdcopy", "--flush", pattern, node.UnixUri("vol0"));
        var a = await ClosedGenerationAsync(node);

        // After A: writes at known offsets (one inside the pattern, one straddling two blocks' worth), flushed.
        (long Offset, long Length)[] sinceA = [(1 * MiB, 4096), (8 * MiB, 64 << 10), (40 * MiB + 4096, 8192)];
        await WriteAsync(node, sinceA);
        var b = await ClosedGenerationAsync(node);
        (long Offset, long Length)[] sinceB = [(20 * MiB, 4096)];
        await WriteAsync(node, sinceB);

        // The live volume: everything written since A.
        Assert.Equal(Normalise([.. sinceA, .. sinceB]), await DirtyMapAsync(node.TcpUri("vol0"), $"gen:{a}"));
        // The volume as of B: only what was written between A and B.
        Assert.Equal(Normalise(sinceA), await DirtyMapAsync(node.TcpUri($"vol0@gen:{b}"), $"gen:{a}"));

        // Both contexts on one connection, with libnbd's own client: one answer per context per request.
        var both = await Tool.CheckAsync("nbdsh", "-c", $$"""
            h.add_meta_context('base:allocation')
            h.add_meta_context('qemu:dirty-bitmap:gen:{{a}}')
            h.connect_uri('{{node.UnixUri($"vol0@gen:{b}")}}')
            seen = {}
            def extents(context, offset, entries, err):
                seen.setdefault(context, []).extend(entries)
            h.block_status(8 * 1024 * 1024 + 65536, 0, extents)
            bitmap = seen['qemu:dirty-bitmap:gen:{{a}}']
            print('contexts', sorted(seen))
            print('dirty', [(sum(bitmap[:i:2]), bitmap[i]) for i in range(0, len(bitmap), 2) if bitmap[i + 1] == 1])
            """);
        Assert.Contains("contexts ['base:allocation', 'qemu:dirty-bitmap:gen:" + a + "']", both);
        Assert.Contains($"dirty [({1 * MiB}, 4096), ({8 * MiB}, 65536)]", both);

        // A point newer than the export is not a bitmap of it: not selected, and the node's log says why.
        var newer = await Tool.RunAsync("nbdinfo", [$"--map=qemu:dirty-bitmap:gen:{b}", node.TcpUri($"vol0@gen:{a}")]);
        Assert.NotEqual(0, newer.ExitCode);
        Assert.Contains($"qemu:dirty-bitmap:gen:{b} on export vol0@gen:{a}, which is not selected", node.Output);
    }

    /// <summary>The generation the last FLUSH closed.</summary>
    private static async Task<long> ClosedGenerationAsync(NodeProcess node) =>
        (long)(await node.MetricsAsync())["actorcache_log_generation{volume=\"vol0\"}"] - 1;

    /// <summary>Writes a byte pattern to each range with nbdsh, then FLUSHes.</summary>
    private static async Task WriteAsync(NodeProcess node, IEnumerable<(long Offset, long Length)> ranges)
    {
        var writes = string.Join('\n', ranges.Select(r => $"h.pwrite(b'\\x5a' * {r.Length}, {r.Offset})"));
        await Tool.CheckAsync("nbdsh", "-c", $"h.connect_uri('{node.UnixUri()}')\n{writes}\nh.flush()\nh.shutdown()");
    }

    /// <summary>The dirty ranges <c>nbdinfo --map=qemu:dirty-bitmap:BITMAP</c> reports, merged, in offset order; the rest must be clean.</summary>
    private static async Task<List<(long Offset, long Length)>> DirtyMapAsync(string uri, string bitmap)
    {
        var map = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", $"--map=qemu:dirty-bitmap:{bitmap}", "--json", uri)).RootElement;
        var dirty = new List<(long Offset, long Length)>();
        var covered = 0L;
        foreach (var extent in map.EnumerateArray())
        {
            var (offset, length, type) = (extent.GetProperty("offset").GetInt64(), extent.GetProperty("length").GetInt64(), extent.GetProperty("type").GetInt32());
            Assert.Equal(covered, offset);
            Assert.True(type is 0 or 1, $"extent at {offset} has type {type}, neither clean (0) nor dirty (1)");
            if (type == 1) dirty.Add((offset, length));
            covered = offset + length;
        }
        Assert.Equal(64 * MiB, covered);
        return Normalise(dirty);
    }

    /// <summary>Ranges rounded out to whole 4 KiB blocks (what the volume tracks), sorted and merged.</summary>
    private static List<(long Offset, long Length)> Normalise(IEnumerable<(long Offset, long Length)> ranges)
    {
        var merged = new List<(long Offset, long Length)>();
        foreach (var (offset, length) in ranges.OrderBy(r => r.Offset))
        {
            var start = offset & ~4095L;
            var end = (offset + length + 4095) & ~4095L;
            if (merged.Count > 0 && merged[^1].Offset + merged[^1].Length >= start)
                merged[^1] = (merged[^1].Offset, Math.Max(merged[^1].Offset + merged[^1].Length, end) - merged[^1].Offset);
            else merged.Add((start, end - start));
        }
        return merged;
    }
}
