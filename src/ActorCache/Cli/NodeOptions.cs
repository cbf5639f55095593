using System.CommandLine;

namespace ActorCache.Cli;

/// <summary>
/// The options of every command that talks to a running node, on its noun (<c>volume</c>, later
/// <c>snapshot</c>) and so on each of its verbs: which node, the token for changes, JSON output.
/// </summary>
public sealed class NodeOptions
{
    public Option<Uri?> Node { get; } = new("--node")
    {
        Description = "the node's admin URL, http://HOST:PORT (default: read from DATA_DIR/admin.url); for volume promote and demote also a cluster node's name",
        HelpName = "URL",
        Recursive = true,
        CustomParser = result =>
        {
            var text = result.Tokens.Single().Value;
            if (NodeTarget.TryParseUrl(text, out var url, out var error)) return url;
            // A bare node name, for the verbs that act on a named cluster node (volume promote --node b).
            if (ActorCache.Volumes.VolumeSpec.IsValidName(text) && NamesNode(result.Parent?.Parent as System.CommandLine.Parsing.CommandResult))
                return new Uri(ClusterNodeScheme + ":" + text);
            result.AddError(error);
            return null;
        },
    };

    /// <summary>How <c>--node NAME</c> (a cluster node's name, not a URL) is carried to the verbs that take one.</summary>
    public const string ClusterNodeScheme = "actorcache-node";

    private static readonly HashSet<Command> NodeNamingVerbs = [];

    /// <summary>The verb takes <c>--node NAME</c>, a cluster node's name, beside <c>--node URL</c>: the command then talks to the node of --data-dir.</summary>
    public static void TakesNodeName(Command verb) => NodeNamingVerbs.Add(verb);

    private static bool NamesNode(System.CommandLine.Parsing.CommandResult? command) => command is not null && NodeNamingVerbs.Contains(command.Command);

    /// <summary>The cluster node named by <c>--node NAME</c>, or null (none given, or a URL).</summary>
    public string? NamedNode(ParseResult parsed) =>
        parsed.GetValue(Node) is { Scheme: ClusterNodeScheme } named ? named.AbsolutePath : null;

    public Option<string?> DataDir { get; } = DataDirOption();

    private static Option<string?> DataDirOption()
    {
        var option = new Option<string?>("--data-dir")
        {
            Description = $"the node's data directory: its admin.url and admin.token are read there (default {NodeTarget.DefaultDataDir})",
            HelpName = "DIR",
            Recursive = true,
        };
        option.Validators.Add(result =>
        {
            if (result.GetValue(option) is { } dir && string.IsNullOrWhiteSpace(dir)) result.AddError("--data-dir is empty; give the node's data directory");
        });
        return option;
    }

    public Option<string?> Token { get; } = new("--token")
    {
        Description = "the node's admin token, needed for changes (default: read from DATA_DIR/admin.token)",
        HelpName = "TOKEN",
        Recursive = true,
    };

    public Option<bool> Json { get; } = new("--json")
    {
        Description = "print the admin API's JSON (stable field names, see the README) instead of tables",
        Recursive = true,
    };

    public void AddTo(Command noun)
    {
        noun.Options.Add(Node);
        noun.Options.Add(DataDir);
        noun.Options.Add(Token);
        noun.Options.Add(Json);
    }

    /// <summary>
    /// Sets a verb's action: resolve the node, call <paramref name="run"/> with a client and the output,
    /// and turn the outcome into the exit code (0 done, 1 refused or failed with one line on stderr).
    /// Usage mistakes never get here: they exit 2 when the command line is parsed.
    /// </summary>
    public void SetAction(Command verb, Func<CommandRun, Task> run)
    {
        verb.SetAction(async (result, ct) =>
        {
            var output = CliOutput.ForConsole(result.GetValue(Json));
            try
            {
                var url = result.GetValue(Node);
                var target = NodeTarget.Resolve(url is { Scheme: ClusterNodeScheme } ? null : url, result.GetValue(DataDir), result.GetValue(Token));
                using var client = new AdminClient(target);
                await run(new CommandRun(result, client, output, ct));
                return 0;
            }
            catch (CliFailure e)
            {
                output.Fail(e.Message);
                return 1;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // A bug, not the user's mistake: still one line, no stack trace.
                output.Fail($"unexpected error: {e.GetType().Name}: {e.Message}");
                return 1;
            }
        });
    }
}

/// <summary>What a verb's action works with: its parsed arguments, the node's client, the output.</summary>
public sealed record CommandRun(ParseResult Parsed, AdminClient Client, CliOutput Output, CancellationToken Cancellation);
