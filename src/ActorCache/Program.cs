using System.CommandLine;
using System.CommandLine.Parsing;
using ActorCache.Cli;
using ActorCache.Hosting;

namespace ActorCache;

/// <summary>
/// The <c>actorcache</c> executable: <c>serve</c> runs a node; the nouns beside it (<c>volume</c>, <c>snapshot</c>,
/// <c>cluster</c>) talk to a running node's admin API (<see cref="Cli"/>).
/// </summary>
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
        var parsed = CommandLine().Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is not { ClearsParseErrors: true }) // --help and --version answer even then
        {
            // Usage mistakes exit 2 like every other bad input (System.CommandLine's own default is 1).
            foreach (var error in parsed.Errors) await Console.Error.WriteLineAsync($"actorcache: {error.Message}");
            await Console.Error.WriteLineAsync($"actorcache: see '{CommandPath(parsed.CommandResult)} --help' for the {(parsed.CommandResult.Command.Subcommands.Count > 0 ? "commands" : "flags")}");
            return 2;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    /// <summary>Every command: <c>serve</c>, and the nouns that talk to a running node.</summary>
    internal static RootCommand CommandLine()
    {
        var root = new RootCommand(
            "ActorCache: replicated block volumes with a write-back cache, served over NBD. 'serve' runs a node; the other commands " +
            "talk to a running node (--node URL, or the admin.url in --data-dir, default ./data). " +
            "Exit codes: 0 done, 1 refused or failed, 2 usage.");
        root.Subcommands.Add(ServeCommand());
        root.Subcommands.Add(VolumeCommands.Create());
        root.Subcommands.Add(SnapshotCommands.Create());
        root.Subcommands.Add(ClusterCommands.Create());
        root.Subcommands.Add(PeerCommands.Create());
        root.Subcommands.Add(ActorCommands.Create());
        root.Subcommands.Add(ShardingCommands.Create());
        root.Subcommands.Add(TopCommand.Create());
        CliHelp.Install(root);
        return root;
    }

    /// <summary>"actorcache volume create": the command a usage mistake was made in.</summary>
    private static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is CommandResult command; r = r.Parent) names.Insert(0, command.Command is RootCommand ? "actorcache" : command.Command.Name);
        return string.Join(' ', names);
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
            Description = "admin HTTP listener for /metrics, /health and the admin API (/api): HOST:PORT (default 127.0.0.1:9460; port 0 picks a free port)",
        };
        var nodeName = new Option<string?>("--node-name")
        {
            Description = "the node's name in the cluster (default: the host name); kept in DATA_DIR/node.name, a restart keeps it",
            HelpName = "NAME",
        };
        var cluster = new Option<string?>("--cluster")
        {
            Description = "Akka remoting address other nodes reach this one at: HOST:PORT (default 127.0.0.1:4053; port 0 picks a free port)",
            HelpName = "HOST:PORT",
        };
        var seed = new Option<string[]>("--seed")
        {
            Description = "a seed node of the cluster to join, HOST:PORT (repeatable; none: the node is a cluster of its own)",
            HelpName = "HOST:PORT",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var discovery = new Option<string?>("--discovery")
        {
            Description = "how the node finds its cluster: seeds (--seed), kubernetes (pods of a label selector, through the Kubernetes API) " +
                          "or config (actorcache.cluster.contact-points); default seeds",
            HelpName = "seeds|kubernetes|config",
        };
        discovery.AcceptOnlyFromAmong("seeds", "kubernetes", "config");
        var management = new Option<string?>("--management")
        {
            Description = "Akka.Management endpoint other nodes bootstrap through, with kubernetes or config discovery: HOST:PORT " +
                          "(default: the --cluster host, port 8558)",
            HelpName = "HOST:PORT",
        };
        var set = new Option<string[]>("--set")
        {
            Description = "override one configuration key: key=value (repeatable)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var serve = new Command("serve", "Run a node: metadata in the data directory, every volume served over NBD.")
        {
            config, dataDir, listen, volume, admin, nodeName, cluster, seed, discovery, management, set,
        };
        serve.SetAction((result, _) => NodeRun.RunAsync(new ServeFlags(
            result.GetValue(config),
            result.GetValue(dataDir),
            result.GetValue(listen) ?? [],
            result.GetValue(volume) ?? [],
            result.GetValue(set) ?? [],
            result.GetValue(admin),
            result.GetValue(nodeName),
            result.GetValue(cluster),
            result.GetValue(seed) ?? [],
            result.GetValue(discovery),
            result.GetValue(management))));
        return serve;
    }
}
