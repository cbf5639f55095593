using System.Diagnostics;
using ActorCache.Admin;
using ActorCache.Blocks;
using ActorCache.Nbd;
using ActorCache.Volumes;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Tests;

/// <summary>
/// While a volume opens (replays its log), the node already answers: NBD clients complete the handshake
/// and are told how far recovery is (here with <c>nbdinfo</c>), and <c>/health</c> names the volume with
/// its progress, bytes and time left.
/// </summary>
public sealed class RecoveryProgressTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-recovery-").FullName;
    private readonly ExportCatalog _catalog = new("");
    private NbdServer _server = null!;
    private string Socket => Path.Combine(_dir, "nbd.sock");

    public Task InitializeAsync()
    {
        NbdListenAddress.TryParse($"unix:{Socket}", out var address, out _);
        _server = new NbdServer(_catalog, new NbdServerOptions { Listen = [address!], HandshakeTimeout = TimeSpan.FromSeconds(5) },
            NullLogger<NbdServer>.Instance);
        _server.Start();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_volume_replaying_its_log_answers_the_handshake_with_its_progress_and_health_says_how_far_it_is()
    {
        var recovery = new VolumeRecovery();
        _catalog.MarkRecovering("vol0", recovery);
        Assert.Equal("opening", recovery.Describe());
        recovery.Report((512L << 20, 2L << 30));
        await Task.Delay(50); // some time has passed, so a rate (and the time left) is known

        var described = recovery.Describe();
        Assert.StartsWith("recovering the log: 25% (512M of 2G), about ", described);
        Assert.EndsWith(" s left", described);

        var (code, output) = await NbdInfoAsync($"nbd+unix:///vol0?socket={Socket}");
        Assert.True(code != 0, output);
        Assert.True(output.Contains("volume vol0 is not served yet, it is recovering the log: 25% (512M of 2G)"), output);
        Assert.Contains("try again shortly", output);

        var report = new VolumeReport("vol0", null, recovery.Describe());
        Assert.Contains(VolumeHealth.Problems(report), p => p.StartsWith("vol0: recovering the log: 25% (512M of 2G), about "));

        // Once open (or failed), the catalog stops naming the recovery.
        recovery.Finish();
        _catalog.EndRecovering("vol0", recovery);
        Assert.Null(_catalog.WhyUnavailable("vol0"));
    }

    private static async Task<(int Code, string Output)> NbdInfoAsync(string uri)
    {
        var start = new ProcessStartInfo("nbdinfo", [uri]) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["PATH"] = "/usr/bin:" + Environment.GetEnvironmentVariable("PATH");
        start.Environment["LIBNBD_DEBUG"] = "1"; // libnbd shows the server's error text in its debug output only
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return (process.ExitCode, await stdout + await stderr);
    }
}
