namespace ActorCache.Integration.Tests;

/// <summary>
/// A real file system on a volume: nbdfuse exposes the export as a file, ext4 is made and mounted on
/// it through a loop device, a tree is copied in, and after a node restart fsck finds it clean and
/// every file is byte for byte what was written.
/// </summary>
public sealed class Ext4Tests : IAsyncLifetime
{
    private readonly string _dataDir = NodeProcess.NewDataDir();
    private readonly string _work = Directory.CreateTempSubdirectory("actorcache-ext4-").FullName;
    private string FuseDir => Path.Combine(_work, "fuse");
    private string Image => Path.Combine(FuseDir, "nbd");
    private string MountPoint => Path.Combine(_work, "mnt");
    private Task? _fuse;

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(FuseDir);
        Directory.CreateDirectory(MountPoint);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await Tool.RunAsync("umount", [MountPoint]);
        await UnfuseAsync();
        Directory.Delete(_work, recursive: true);
        Directory.Delete(_dataDir, recursive: true);
    }

    private async Task FuseAsync(NodeProcess node, string export = "vol0")
    {
        _fuse = Tool.RunAsync("nbdfuse", [FuseDir, node.UnixUri(export)], TimeSpan.FromMinutes(10));
        for (var i = 0; i < 100 && !File.Exists(Image); i++) await Task.Delay(100);
        Assert.True(File.Exists(Image), "nbdfuse did not expose the export");
    }

    private async Task UnfuseAsync()
    {
        if (_fuse is null) return;
        // umount lets go of the loop device asynchronously: until the device lets go of the file, fusermount3 -u fails (busy)
        // and nbdfuse keeps serving. Retried for a while, then unmounted lazily, and nbdfuse is killed if it still does not end
        // (once it waited out the test's 10 minutes in CI).
        var unmounted = await Tool.RunAsync("fusermount3", ["-u", FuseDir]);
        for (var attempt = 0; unmounted.ExitCode != 0 && attempt < 50; attempt++)
        {
            await Task.Delay(200);
            unmounted = await Tool.RunAsync("fusermount3", ["-u", FuseDir]);
        }
        if (unmounted.ExitCode != 0)
        {
            Console.Error.WriteLine($"fusermount3 -u {FuseDir} kept failing ({unmounted.Output.Trim()}); unmounting lazily");
            await Tool.RunAsync("fusermount3", ["-u", "-z", FuseDir]);
        }
        if (await Task.WhenAny(_fuse, Task.Delay(TimeSpan.FromSeconds(30))) != _fuse)
        {
            Console.Error.WriteLine($"nbdfuse on {FuseDir} did not end 30 s after its unmount; killed");
            await Tool.RunAsync("pkill", ["-KILL", "-f", $"nbdfuse {FuseDir}"]);
        }
        await _fuse;
        _fuse = null;
    }

    /// <summary>Writes a tree of files with random sizes and contents; returns relative path -> SHA-256.</summary>
    private static Dictionary<string, string> WriteTree(string root)
    {
        var random = new Random(1234);
        var sums = new Dictionary<string, string>();
        for (var d = 0; d < 8; d++)
        {
            var dir = Path.Combine(root, $"dir{d}", $"sub{d % 3}");
            Directory.CreateDirectory(dir);
            for (var f = 0; f < 12; f++)
            {
                var data = new byte[random.Next(0, 3) == 0 ? random.Next(1, 4096) : random.Next(4096, 2 << 20)];
                random.NextBytes(data);
                var path = Path.Combine(dir, $"file{f}.bin");
                File.WriteAllBytes(path, data);
                sums[Path.GetRelativePath(root, path)] = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(data));
            }
        }
        return sums;
    }

    /// <summary>The destage horizon recorded in the log's checkpoint (bytes 24..31).</summary>
    /// <summary>The checkpoint's horizon: the newer of its two slots (the horizon only moves forward).</summary>
    private long CheckpointHorizon()
    {
        var bytes = File.ReadAllBytes(Path.Combine(_dataDir, "log", "vol0", "checkpoint"));
        return Math.Max(BitConverter.ToInt64(bytes, 24), bytes.Length > 4096 ? BitConverter.ToInt64(bytes, 4096 + 24) : 0);
    }

    [Theory]
    [InlineData("pass-through", false)]
    [InlineData("write-back", false)]
    [InlineData("write-back", true)]
    public async Task Ext4_survives_a_node_restart_with_every_file_intact(string mode, bool sigkill)
    {
        var node = await NodeProcess.StartAsync(_dataDir, "--volume", $"vol0:512M:{mode}");
        await FuseAsync(node);
        await Tool.CheckAsync("mkfs.ext4", "-q", "-F", Image);
        await Tool.CheckAsync("mount", "-o", "loop", Image, MountPoint);
        var sums = WriteTree(MountPoint);
        await Tool.CheckAsync("sync");
        await Tool.CheckAsync("umount", MountPoint);
        await UnfuseAsync();
        if (sigkill)
        {
            // sync + umount flushed everything; with an hour of retention nothing was destaged, so all
            // of the file system lives in the log when the node dies.
            Assert.False(File.Exists(Path.Combine(_dataDir, "log", "vol0", "checkpoint")) && CheckpointHorizon() > 0, "the test needs an undestaged log");
            await node.KillAsync();
        }
        else Assert.Equal(0, (await node.StopAsync()).ExitCode);
        await node.DisposeAsync();

        node = await NodeProcess.StartAsync(_dataDir); // no --volume: it serves what it had
        await using var _ = node;
        await AssertTreeAsync(node, "vol0", sums);
    }

    /// <summary>fsck finds the file system on <paramref name="export"/> clean, and every file of <paramref name="sums"/> is there, byte for byte.</summary>
    private async Task AssertTreeAsync(NodeProcess node, string export, Dictionary<string, string> sums)
    {
        await FuseAsync(node, export);
        var fsck = await Tool.RunAsync("fsck.ext4", ["-n", "-f", Image]);
        Assert.True(fsck.ExitCode == 0, fsck.Output);
        await Tool.CheckAsync("mount", "-o", "loop,ro", Image, MountPoint);
        foreach (var (relative, sum) in sums)
            Assert.Equal(sum, Tool.Sha256(Path.Combine(MountPoint, relative)));
        await Tool.CheckAsync("umount", MountPoint);
        await UnfuseAsync();
    }

    [Fact]
    public async Task Files_deleted_after_a_snapshot_come_back_in_a_clone_and_by_a_revert()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:256M");
        await FuseAsync(node);
        await Tool.CheckAsync("mkfs.ext4", "-q", "-F", Image);
        await Tool.CheckAsync("mount", "-o", "loop", Image, MountPoint);
        var sums = WriteTree(MountPoint);
        await Tool.CheckAsync("umount", MountPoint); // flushed: the point the snapshot keeps
        await Cli.CheckAsync(node, "snapshot", "create", "vol0", "before-rm");

        await Tool.CheckAsync("mount", "-o", "loop", Image, MountPoint);
        Directory.Delete(Path.Combine(MountPoint, "dir3"), recursive: true);
        Directory.Delete(Path.Combine(MountPoint, "dir5"), recursive: true);
        await System.IO.File.WriteAllBytesAsync(Path.Combine(MountPoint, "after.bin"), Tool.RandomBytes(1 << 20, 9));
        await Tool.CheckAsync("umount", MountPoint);
        await UnfuseAsync();

        // A clone made from the snapshot has them.
        await Cli.CheckAsync(node, "snapshot", "clone", "vol0@before-rm", "restore");
        await AssertTreeAsync(node, "restore", sums);

        // The volume gets them back online, and the revert can be undone.
        await Cli.CheckAsync(node, "volume", "revert", "vol0", "--to", "before-rm");
        await AssertTreeAsync(node, "vol0", sums);
        var undo = (await Cli.JsonAsync(node, "snapshot", "list", "vol0")).EnumerateArray()
            .Select(s => s.GetProperty("name").GetString()!).Single(n => n.StartsWith("pre-revert-", StringComparison.Ordinal));
        await Cli.CheckAsync(node, "volume", "revert", "vol0", "--to", undo);
        await FuseAsync(node);
        Assert.Equal(0, (await Tool.RunAsync("fsck.ext4", ["-n", "-f", Image])).ExitCode);
        await Tool.CheckAsync("mount", "-o", "loop,ro", Image, MountPoint);
        Assert.False(Directory.Exists(Path.Combine(MountPoint, "dir3")), "the undo brings the deletion back too");
        Assert.True(System.IO.File.Exists(Path.Combine(MountPoint, "after.bin")));
        await Tool.CheckAsync("umount", MountPoint);
    }
}
