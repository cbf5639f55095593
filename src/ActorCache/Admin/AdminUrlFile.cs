using ActorCache.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Admin;

/// <summary>
/// Publishes where the admin listener actually listens (port 0 picks one): logs it and writes it to
/// <c>DATA_DIR/admin.url</c> for local tools, and removes the file on a clean stop. A node killed with
/// SIGKILL leaves the file behind; the next start overwrites it.
/// </summary>
public sealed class AdminUrlFile(NodeSettings settings, NodeListeners listeners, ILogger<AdminUrlFile> logger) : IHostedLifecycleService
{
    public const string FileName = "admin.url";

    private string Path => System.IO.Path.Combine(settings.DataDir, FileName);

    // Runs after every hosted service has started, the web server included, so its address is bound.
    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        // Kestrel serves on a socket the start bound (it reports it as a file handle, not an address).
        var url = listeners.Admin.Url;
        // Written aside and renamed, so a reader never sees half a URL.
        var temporary = Path + ".tmp";
        await File.WriteAllTextAsync(temporary, url + "\n", cancellationToken);
        File.Move(temporary, Path, overwrite: true);
        logger.LogInformation("admin listening on {Url} (/metrics, /health, /health/live, /api)", url);
    }

    // Runs before anything stops: from here on the URL is about to stop answering.
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
