using System.Buffers.Binary;
using System.IO.Hashing;

namespace ActorCache.Integration.Tests;

/// <summary>
/// The durability contract under SIGKILL: random writes over two connections with FLUSH and FUA mixed
/// in, the node killed at a random moment, restarted, and every 4 KiB block checked. What a completed
/// FLUSH or FUA covered must be exactly there; anything later may be old or new, never torn. The
/// restarted node takes the next run's writes, so most kills land on a log recovered before.
/// Set ACTORCACHE_CRASH_SOAK to a number of kills to run a longer soak.
/// </summary>
public sealed class CrashTests : IDisposable
{
    private const int Blocks = 16384; // 64 MiB
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static int Kills(int normal) =>
        int.TryParse(Environment.GetEnvironmentVariable("ACTORCACHE_CRASH_SOAK"), out var soak) && soak > 0 ? soak : normal;

    [Theory]
    [InlineData("write-back", 14)]
    [InlineData("write-through", 6)]
    public async Task Sigkill_never_loses_a_flushed_write_or_tears_a_block(string mode, int kills)
    {
        kills = Kills(kills);
        var script = Path.Combine(AppContext.BaseDirectory, "scripts", "crash_writer.py");
        var random = new Random(mode.GetHashCode() & 0xffff);
        var baseline = new long[Blocks]; // the version each block holds as the run starts (0: never written)
        // Retention 0 and a short destage interval keep the destager busy too, so kills also land in the
        // middle of destaging (below the retention cap it runs on its tick, not after every FLUSH).
        string[] nodeArgs = ["--volume", $"crash:64M:{mode}", "--set", "actorcache.cache.retention-time = 0s",
            "--set", "actorcache.cache.destage-interval = 20ms",
            "--set", "actorcache.cache.segment-size = 4M", "--set", "actorcache.cache.ring-size = 64M", "--set", "actorcache.cache.max-batch = 1M"];
        var version = 0L;
        NodeProcess? node = null;
        try
        {
            for (var run = 1; run <= kills; run++)
            {
                node ??= await NodeProcess.StartAsync(_dataDir, nodeArgs);
                var journal = Path.Combine(_dataDir, $"journal-{run}.txt");
                var writer = Tool.RunAsync("/usr/bin/python3", [script, node.UnixUri("crash"), journal, run.ToString(), Blocks.ToString(), version.ToString()],
                    TimeSpan.FromMinutes(2));
                // The kill lands at a random moment of the writing, not before the writer is connected: on a loaded
                // machine python and its two connections can take longer than the shortest delay (the writer opens
                // its journal once both are connected).
                for (var waited = 0; !File.Exists(journal) && !writer.IsCompleted && waited < 300; waited++) await Task.Delay(100);
                await Task.Delay(random.Next(400, 2500));
                await node.KillAsync();
                var writerResult = await writer;
                Assert.True(writerResult.ExitCode == 0, $"run {run}: the writer failed: {writerResult.Output}");
                await node.DisposeAsync();
                node = null;

                var (issued, required, lastVersion) = ReadJournal(journal);
                Assert.True(issued.Count > 0, $"run {run}: the writer wrote nothing before the kill");
                version = lastVersion;

                node = await NodeProcess.StartAsync(_dataDir, nodeArgs);
                var image = Path.Combine(_dataDir, "image.bin");
                await Tool.CheckAsync("nbdcopy", node.UnixUri("crash"), image);
                var bytes = await File.ReadAllBytesAsync(image);
                File.Delete(image);
                for (var block = 0; block < Blocks; block++)
                {
                    var (valid, v) = Decode(bytes.AsSpan(block * 4096, 4096), block);
                    Assert.True(valid, $"run {run} ({mode}): block {block} is torn or belongs to another block");
                    var allowed = v == baseline[block] || (issued.TryGetValue(block, out var set) && set.Contains(v));
                    Assert.True(allowed, $"run {run} ({mode}): block {block} holds version {v}, which was never written there (baseline {baseline[block]})");
                    if (required.TryGetValue(block, out var minimum))
                        Assert.True(v >= minimum, $"run {run} ({mode}): block {block} holds version {v} but a completed FLUSH/FUA covered version {minimum}");
                    baseline[block] = v;
                }
                // Most runs write on into the node that just recovered, so the next kill lands on a log recovered once
                // already; every third run, and the last, stops it cleanly (exit 0) and the next run starts from that.
                if (run % 3 == 0 || run == kills)
                {
                    Assert.Equal(0, (await node.StopAsync()).ExitCode);
                    await node.DisposeAsync();
                    node = null;
                }
            }
        }
        finally
        {
            if (node is not null) await node.DisposeAsync();
        }
    }

    /// <summary>Versions issued per block, the durable minimum per block, and the last version used.</summary>
    private static (Dictionary<int, HashSet<long>> Issued, Dictionary<int, long> Required, long Last) ReadJournal(string path)
    {
        var issued = new Dictionary<int, HashSet<long>>();
        var acknowledged = new Dictionary<int, long>();
        var required = new Dictionary<int, long>();
        long last = 0;
        foreach (var line in File.ReadLines(path))
        {
            var f = line.Split(' ');
            if (f.Length < 2 || !long.TryParse(f[^1], out var v)) continue; // a line cut short by the kill
            switch (f[0])
            {
                case "I" when f.Length == 4:
                    for (var b = int.Parse(f[1]); b < int.Parse(f[1]) + int.Parse(f[2]); b++)
                        (issued.TryGetValue(b, out var s) ? s : issued[b] = []).Add(v);
                    last = Math.Max(last, v);
                    break;
                case "A" when f.Length == 4:
                    for (var b = int.Parse(f[1]); b < int.Parse(f[1]) + int.Parse(f[2]); b++) acknowledged[b] = v;
                    break;
                case "D" when f.Length == 4:
                    for (var b = int.Parse(f[1]); b < int.Parse(f[1]) + int.Parse(f[2]); b++)
                        required[b] = Math.Max(required.GetValueOrDefault(b), v);
                    break;
                case "F":
                    foreach (var (b, ack) in acknowledged) required[b] = Math.Max(required.GetValueOrDefault(b), ack);
                    break;
            }
        }
        return (issued, required, last);
    }

    /// <summary>A block as the writer wrote it: (true, version), all zeroes: (true, 0), anything else: torn.</summary>
    private static (bool Valid, long Version) Decode(ReadOnlySpan<byte> block, int number)
    {
        if (!block.ContainsAnyExcept((byte)0)) return (true, 0);
        var body = block[..^4];
        if (Crc32.HashToUInt32(body) != BinaryPrimitives.ReadUInt32LittleEndian(block[^4..])) return (false, -1);
        if (BinaryPrimitives.ReadInt64LittleEndian(block) != number) return (false, -1);
        return (true, BinaryPrimitives.ReadInt64LittleEndian(block[8..]));
    }
}
