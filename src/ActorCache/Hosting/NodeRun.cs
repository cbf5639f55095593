using ActorCache.Hosting.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Hosting;

/// <summary>
/// <c>actorcache serve</c> from flags to exit code: settings (2 when wrong), the data directory, the
/// checks and listeners that come before any file, the host; a failed start is one line on stderr and
/// leaves nothing behind (exit 1); a stop that lost acknowledged writes exits 1.
/// </summary>
public static class NodeRun
{
    public static async Task<int> RunAsync(ServeFlags flags)
    {
        NodeSettings settings;
        try
        {
            settings = NodeSettingsLoader.Load(flags);
        }
        catch (SettingsException e)
        {
            await Console.Error.WriteLineAsync($"actorcache: {e.Message}");
            return 2;
        }

        DataDirectoryLock dataLock;
        try
        {
            dataLock = DataDirectoryLock.Acquire(settings.DataDir);
        }
        catch (SettingsException e)
        {
            await Console.Error.WriteLineAsync($"actorcache: cannot start: {e.Message}");
            return 1;
        }

        using (dataLock)
        {
            var debugLog = new DebugLogFile(settings.DataDir);
            var startLog = debugLog.CreateLogger("ActorCache.Program");
            var metadataFile = MetadataFile(settings);
            var metadataExisted = metadataFile is not null && File.Exists(metadataFile);
            NodeListeners? listeners = null;
            IHost? host = null;
            try
            {
                // Everything that can be checked without the metadata, before any file is created.
                settings = settings with { NodeName = ActorCache.Cluster.NodeIdentity.Resolve(settings) };
                StartChecks.CheckBackings(settings);
                listeners = StartChecks.BindListeners(settings);
                host = NodeHost.Build(settings, listeners, debugLog);
                await host.StartAsync();
            }
            catch (Exception e)
            {
                startLog.LogError(e, "the node failed to start");
                // A give-up on joining that came while the host was still starting cancelled the start: say that, not its echo.
                var gaveUp = host?.Services.GetService<ActorCache.Cluster.JoinGiveUp>()?.Reason;
                await Console.Error.WriteLineAsync(gaveUp is not null ? $"actorcache: {gaveUp}" : $"actorcache: cannot start: {DescribeStartFailure(e, debugLog)}");
                var started = host?.Services.GetService<NodeService>()?.Started ?? false;
                if (host is not null)
                {
                    // Closes what the start opened (volume actors, the actor system); says nothing about a clean stop.
                    try { await host.StopAsync(); } catch (Exception stop) { startLog.LogError(stop, "stopping after the failed start failed"); }
                    host.Dispose();
                }
                if (!started) listeners?.Dispose(); // the web server never took the admin socket
                debugLog.Dispose();
                // A failed start leaves nothing behind: the metadata store it created, its claim on the
                // directory, and the debug log too when the node refused for a reason it printed in full.
                if (metadataFile is not null && !metadataExisted) DeleteSqlite(metadataFile);
                dataLock.Abandon(keepDebugLog: e is not SettingsException);
                return 1;
            }
            using (debugLog)
            using (host)
            {
                // Returns when SIGINT/SIGTERM arrives and the graceful stop has run.
                await host.WaitForShutdownAsync();
                // The stop has run; a signal while the host and the runtime close must not turn exit 0 into 143.
                ExitSignals.IgnoreFromNowOn();
                // A node that left its cluster because another live node has its name, or to join its seeds' cluster, exits 1
                // whatever its volumes did.
                if ((host.Services.GetRequiredService<ActorCache.Cluster.DuplicateNameGuard>().Conflict ??
                     host.Services.GetRequiredService<ActorCache.Cluster.SeparateClusterGuard>().Conflict) is { } conflict)
                {
                    await Console.Error.WriteLineAsync($"actorcache: {conflict}");
                    return 1;
                }
                // A node its seeds never let in within akka.cluster.shutdown-after-unsuccessful-join-seed-nodes stopped so that its
                // supervisor starts it again: a new run (a new incarnation on the address) gets in where a stuck one may never.
                if (host.Services.GetRequiredService<ActorCache.Cluster.JoinGiveUp>().Reason is { } gaveUp)
                {
                    await Console.Error.WriteLineAsync($"actorcache: {gaveUp}");
                    return 1;
                }
                // Acknowledged writes that could not be made durable are an error exit, not a clean stop.
                return host.Services.GetRequiredService<NodeService>().Losses.Count == 0 ? 0 : 1;
            }
        }
    }

    /// <summary>One line for a failed start: the message of a refusal the node made itself, else the innermost cause.</summary>
    private static string DescribeStartFailure(Exception e, DebugLogFile debugLog)
    {
        if (e is SettingsException) return e.Message;
        while (e is AggregateException { InnerException: { } inner }) e = inner;
        if (e.InnerException is { } cause && e.Message.Contains("see inner exception", StringComparison.OrdinalIgnoreCase)) e = cause;
        return $"{e.Message.ReplaceLineEndings(" ")} (the details are in {debugLog.Path})";
    }

    /// <summary>The SQLite file the metadata lives in, or null with PostgreSQL.</summary>
    private static string? MetadataFile(NodeSettings settings)
    {
        if (settings.Metadata != MetadataProvider.Sqlite) return null;
        var dataSource = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(settings.MetadataConnectionString).DataSource;
        return string.IsNullOrEmpty(dataSource) || dataSource == ":memory:" ? null : Path.GetFullPath(dataSource, settings.DataDir);
    }

    private static void DeleteSqlite(string path)
    {
        foreach (var file in new[] { path, path + "-wal", path + "-shm", path + "-journal" })
            try { File.Delete(file); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
