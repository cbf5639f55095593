using System.Security.Cryptography;
using System.Text;
using ActorCache.Hosting;
using Microsoft.Extensions.Hosting;

namespace ActorCache.Admin;

/// <summary>
/// The secret that admin API requests which change something must carry (<c>Authorization: Bearer TOKEN</c>).
/// A new random one at every start, written to <c>DATA_DIR/admin.token</c> readable by the node's user
/// only (0600), before <c>admin.url</c> tells tools where to go; removed on a clean stop like it. So
/// whoever may read the data directory may change the node, and nobody else on the machine.
/// </summary>
public sealed class AdminToken(NodeSettings settings) : IHostedLifecycleService
{
    public const string FileName = "admin.token";

    private readonly byte[] _token = Encoding.ASCII.GetBytes(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)));

    private string Path => System.IO.Path.Combine(settings.DataDir, FileName);

    /// <summary>Whether <paramref name="presented"/> is this node's token (compared in constant time).</summary>
    public bool Matches(string presented) => CryptographicOperations.FixedTimeEquals(_token, Encoding.ASCII.GetBytes(presented));

    // Before AdminUrlFile's (registered after this one): a tool that finds admin.url finds the token too.
    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        var temporary = Path + ".tmp";
        File.Delete(temporary);
        // Created 0600, never wider for a moment, and renamed into place so a reader never sees half a token.
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        await using (var file = new FileStream(temporary, options))
        {
            await file.WriteAsync(_token, cancellationToken);
            await file.WriteAsync("\n"u8.ToArray(), cancellationToken);
        }
        File.Move(temporary, Path, overwrite: true);
    }

    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        File.Delete(Path);
        return Task.CompletedTask;
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
