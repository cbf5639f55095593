using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace ActorCache.Integration.Tests;

/// <summary>
/// Starts that cannot work: they fail before creating anything, with one line naming the cause (no
/// stack trace, no "stopped cleanly"), exit 1, and leave the data directory as they found it.
/// </summary>
public sealed class StartFailureTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static void AssertOneLineFailure(NodeProcess node, string message)
    {
        Assert.Contains($"actorcache: cannot start: {message}", node.Output);
        Assert.DoesNotContain("   at ", node.Output);
        Assert.DoesNotContain("Hosting failed to start", node.Output);
        Assert.DoesNotContain("stopped cleanly", node.Output);
    }

    [Fact]
    public async Task Admin_address_in_use_exits_1_before_any_file_is_created()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var node = NodeProcess.Launch(_dataDir, [], admin: $"127.0.0.1:{port}");
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        await node.DisposeAsync();
        AssertOneLineFailure(node, $"cannot listen on admin address 127.0.0.1:{port}: address already in use");
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")));
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "vol0.img")));
        Assert.False(Directory.Exists(Path.Combine(_dataDir, "log")));
        Assert.False(File.Exists(Path.Combine(_dataDir, "node.pid")));

        // A data directory this start would have created is not left behind either.
        var fresh = Path.Combine(_dataDir, "fresh");
        var result = await Tool.RunAsync("dotnet", [NodeProcess.NodeDll, "serve", "--data-dir", fresh, "--listen", $"tcp://127.0.0.1:{NodeProcess.FreePort()}",
            "--admin", $"127.0.0.1:{port}"], TimeSpan.FromSeconds(60));
        Assert.Equal(1, result.ExitCode);
        Assert.False(Directory.Exists(fresh), "a start that failed removes the data directory it created");
    }

    [Fact]
    public async Task A_volume_larger_than_the_file_system_can_hold_is_one_line_and_leaves_nothing()
    {
        var node = NodeProcess.Launch(_dataDir, ["--volume", "v1:1P"]);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        await node.DisposeAsync();
        AssertOneLineFailure(node, "volume v1: cannot prepare backing");
        Assert.Contains("the file system cannot hold a file of", node.Output);
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")), "the metadata the failed start created is removed");
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "v1.img")));
        // The trace is kept for whoever wants it, in the debug log, not on the console.
        var debug = await File.ReadAllTextAsync(Path.Combine(_dataDir, "actorcache-debug.log"));
        Assert.Contains("the node failed to start", debug);
        Assert.Contains("   at ", debug);
    }

    [Fact]
    public async Task A_directory_as_backing_is_named_as_such()
    {
        var node = NodeProcess.Launch(_dataDir, ["--volume", "v:64M:backing=/tmp"]);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        await node.DisposeAsync();
        AssertOneLineFailure(node, "volume v: backing /tmp is a directory; give a file or a block device");
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")));
    }

    [Fact]
    public async Task A_data_directory_on_a_read_only_file_system_is_not_called_in_use()
    {
        await using var tmpfs = await Tmpfs.MountAsync("16m");
        await tmpfs.RemountReadOnlyAsync();
        var node = NodeProcess.Launch(tmpfs.Path, []);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        await node.DisposeAsync();
        AssertOneLineFailure(node, $"data directory {tmpfs.Path} is on a read-only file system");
        Assert.DoesNotContain("in use", node.Output);
    }

    [Fact]
    public async Task A_log_file_system_smaller_than_the_smallest_log_refuses_the_start_saying_how_much_is_needed()
    {
        await using var tmpfs = await Tmpfs.MountAsync("32m");
        var node = NodeProcess.Launch(_dataDir, ["--volume", "vol0:64M", "--set", $"actorcache.cache.log-dir={tmpfs.Path}"]);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(60)));
        await node.DisposeAsync();
        // The smallest log is one segment (64M by default): it is reused in place once destaged.
        AssertOneLineFailure(node, $"the log directory {tmpfs.Path} is on a file system with 32M free");
        Assert.Contains("need at least 64M each", node.Output);
        Assert.False(File.Exists(Path.Combine(_dataDir, "volumes", "vol0.img")));
        Assert.False(File.Exists(Path.Combine(_dataDir, "metadata.db")));
    }

    [Fact]
    public async Task An_unreachable_metadata_store_is_named_as_the_cause()
    {
        var node = NodeProcess.Launch(_dataDir, ["--set", "actorcache.metadata.provider=postgresql",
            "--set", "actorcache.metadata.connection-string=\"Host=127.0.0.1;Port=1;Username=x;Database=y;Timeout=3\""]);
        Assert.Equal(1, await node.WaitExitAsync(TimeSpan.FromSeconds(90)));
        await node.DisposeAsync();
        AssertOneLineFailure(node, "the metadata store (PostgreSQL) did not answer within 30 s; check actorcache.metadata");
        Assert.Contains("Failed to connect to 127.0.0.1:1", node.Output);
    }
}
