using System.CommandLine;
using ActorCache.Hosting;

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
        serve.SetAction((result, _) => NodeRun.RunAsync(new ServeFlags(
            result.GetValue(config),
            result.GetValue(dataDir),
            result.GetValue(listen) ?? [],
            result.GetValue(volume) ?? [],
            result.GetValue(set) ?? [],
            result.GetValue(admin))));
        return serve;
    }
}
