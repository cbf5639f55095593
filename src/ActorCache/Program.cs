using System.CommandLine;
using ActorCache.Hosting;
using ActorCache.Hosting.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache;

/// <summary>The <c>actorcache</c> executable: <c>serve</c> runs a node.</summary>
public static class Program
{
    /// <summary>
    /// Socket completions run on the socket engine's own thread instead of being handed to the thread
    /// pool: an NBD request then costs no thread switch between its recv and its work (about a fifth
    /// more IOPS for 4 KiB I/O on two cores). The NBD receive loop runs there, so it does only what
    /// cannot wait for a disk and sends anything else to the pool; it yields the thread every few
    /// hundred requests, and the console logger drops lines rather than block. One wait remains: a
    /// staged write takes its volume's append lock, which a partial-block write on the pool holds
    /// while it reads the block's old content. Read once, when the first socket is made; set the
    /// variable to 0 to opt out.
    /// </summary>
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static async Task<int> Main(string[] args)
    {
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null) Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        var root = new RootCommand("ActorCache: replicated block volumes with a write-back cache, served over NBD.");
        root.Subcommands.Add(ServeCommand());
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // Usage mistakes exit 2 like every other bad input (System.CommandLine's own default is 1).
            foreach (var error in parsed.Errors) await Console.Error.WriteLineAsync($"actorcache: {error.Message}");
            await Console.Error.WriteLineAsync("actorcache: see 'actorcache serve --help' for the flags");
            return 2;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    private static Command ServeCommand()
    {
        var config = new Option<string?>("--config") { Description = "HOCON file overriding hocon/actorcache.conf" };
        var dataDir = new Option<string?>("--data-dir") { Description = "data directory (default ./data)" };
        var listen = new Option<string[]>("--listen")
        {
            Description = "serve NBD on tcp://HOST:PORT or unix:PATH (repeatable; default tcp://127.0.0.1:10809 and unix:DATA_DIR/nbd.sock)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var volume = new Option<string[]>("--volume")
        {
            Description = "create a volume if missing: NAME:SIZE[:MODE][:backing=PATH][:read-only] (repeatable)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var admin = new Option<string?>("--admin")
        {
            Description = "admin HTTP listener for /metrics and /health: HOST:PORT (default 127.0.0.1:9460; port 0 picks a free port)",
        };
        var set = new Option<string[]>("--set")
        {
            Description = "override one configuration key: key=value (repeatable)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var serve = new Command("serve", "Run a node: metadata in the data directory, every volume served over NBD.")
        {
            config, dataDir, listen, volume, admin, set,
        };
        serve.SetAction((result, _) => ServeAsync(new ServeFlags(
            result.GetValue(config),
            result.GetValue(dataDir),
            result.GetValue(listen) ?? [],
            result.GetValue(volume) ?? [],
            result.GetValue(set) ?? [],
            result.GetValue(admin))));
        return serve;
    }

    private static async Task<int> ServeAsync(ServeFlags flags)
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
                StartChecks.CheckBackings(settings);
                listeners = StartChecks.BindListeners(settings);
                host = NodeHost.Build(settings, listeners, debugLog);
                await host.StartAsync();
            }
            catch (Exception e)
            {
                startLog.LogError(e, "the node failed to start");
                await Console.Error.WriteLineAsync($"actorcache: cannot start: {DescribeStartFailure(e, debugLog)}");
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
