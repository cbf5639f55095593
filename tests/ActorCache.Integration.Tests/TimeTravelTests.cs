using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Time travel without a snapshot (DESIGN §3): an export name <c>VOL@gen:N</c>, <c>VOL@TIME</c> or
/// <c>VOL@-90s</c> serves the volume as it was then, read-only, to real clients, while the live volume
/// moves on; a point the log no longer covers is refused with the window that is restorable.
/// </summary>
public sealed class TimeTravelTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Fact]
    public async Task A_generation_or_a_time_is_served_read_only_as_it_was_while_the_volume_moves_on()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M");
        var first = Path.Combine(_dataDir, "first.img");
        var second = Path.Combine(_dataDir, "second.img");
        await File.WriteAllBytesAsync(first, Tool.RandomBytes(4 << 20, 1));
        await File.WriteAllBytesAsync(second, Tool.RandomBytes(4 << 20, 2));

        await Tool.CheckAsync("nbdcopy", "--flush", first, node.UnixUri("vol0"));
        var generation = (long)(await node.MetricsAsync())["actorcache_log_generation{volume=\"vol0\"}"] - 1; // the one that FLUSH closed
        var between = DateTimeOffset.UtcNow;
        await Task.Delay(1200); // the next write's batches carry a later time
        await Tool.CheckAsync("nbdcopy", "--flush", second, node.UnixUri("vol0"));

        foreach (var point in new[] { $"gen:{generation}", between.ToString("yyyy-MM-ddTHH:mm:ss.fffZ") })
        {
            var export = $"vol0@{point}";
            var copy = Path.Combine(_dataDir, "copy.img");
            await Tool.CheckAsync("nbdcopy", node.UnixUri(export), copy);
            Assert.True(await SameStartAsync(first, copy), $"{export} does not read what the volume held then");
            var info = JsonDocument.Parse(await Tool.CheckAsync("nbdinfo", "--json", node.UnixUri(export))).RootElement.GetProperty("exports")[0];
            Assert.True(info.GetProperty("is_read_only").GetBoolean());
            Assert.Equal(64L << 20, info.GetProperty("export-size").GetInt64());
            // Strict mode off: the server itself must refuse the write, not libnbd on seeing the read-only flag.
            var write = await Tool.RunAsync("nbdsh", ["-c",
                $"h.set_strict_mode(0)\nh.connect_uri('{node.UnixUri(export)}')\ntry:\n    h.pwrite(b'x' * 4096, 0)\n    print('written')\nexcept nbd.Error as e:\n    print('refused', e.errno)"]);
            Assert.Contains("refused EPERM", write.Output);
        }

        // The live volume has the second write; a relative time just now is the live state too.
        var live = Path.Combine(_dataDir, "live.img");
        await Tool.CheckAsync("nbdcopy", node.UnixUri("vol0@-0s"), live);
        Assert.True(await SameStartAsync(second, live));

        // Refused with the reason in the reply (clients show only the code) and in the node's log.
        var gone = await Tool.RunAsync("nbdinfo", [node.UnixUri("vol0@gen:999999")]);
        Assert.NotEqual(0, gone.ExitCode);
        Assert.Contains("generation 999999 is not restorable; restorable now: generation", node.Output);
        var nonsense = await Tool.RunAsync("nbdinfo", [node.UnixUri("vol0@nosuchsnapshot")]);
        Assert.NotEqual(0, nonsense.ExitCode);
        Assert.Contains("has no snapshot named 'nosuchsnapshot'", node.Output);
    }

    /// <summary>True when <paramref name="copy"/> starts with all of <paramref name="expected"/>.</summary>
    private static async Task<bool> SameStartAsync(string expected, string copy)
    {
        var want = await File.ReadAllBytesAsync(expected);
        var got = await File.ReadAllBytesAsync(copy);
        return got.Length >= want.Length && want.AsSpan().SequenceEqual(got.AsSpan(0, want.Length));
    }
}
