using System.CommandLine;
using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache sharding show</c>: the cluster's shard regions with their shards and entities, in the manner of
/// Petabridge.Cmd's sharding commands. Each replicated volume has one entity per replica, <c>NODE/VOLUME</c>, on its node.
/// </summary>
public static class ShardingCommands
{
    public static Command Create()
    {
        var options = new NodeOptions();
        var sharding = new Command("sharding",
            "The cluster sharding of replicas: one entity per volume and replica node (NODE/VOLUME), the control end of that replica, " +
            "always on its own node. The node is --node URL, or the one whose data directory is --data-dir " +
            $"(default {NodeTarget.DefaultDataDir}). Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.");
        options.AddTo(sharding);
        sharding.Subcommands.Add(Show(options));
        return sharding.WithExamples("actorcache sharding show --data-dir a");
    }

    private static Command Show(NodeOptions options)
    {
        var command = new Command("show",
            "Every member's shard region as this node sees it: its shards and the entities running in them (asked of each reachable " +
            "member, 2 s at most), and which member runs the shard coordinator (the oldest).");
        options.SetAction(command, async run =>
        {
            var regions = await run.Client.GetShardingAsync(run.Cancellation);
            if (run.Output.Json)
            {
                run.Output.WriteJson(regions);
                return;
            }
            run.Output.Write(Table(regions));
        });
        return command.WithExamples("actorcache sharding show",
            "actorcache sharding show --json | jq -r '.[] | .node as $n | .shards[].entities[] | \"\\($n) \\(.)\"'");
    }

    private static IRenderable Table(IReadOnlyList<ShardRegionInfo> regions)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumns("NODE", "ADDRESS", "REGION", "SHARDS", "ENTITIES");
        foreach (var r in regions)
        {
            var node = Markup.Escape(r.Node) + (r.Self ? " [dim](this node)[/]" : "") + (r.Coordinator ? " [dim](coordinator)[/]" : "");
            var entities = r.Problem is { } problem
                ? new Markup($"[red]{Markup.Escape(problem)}[/]")
                : new Markup(r.Shards.Count == 0 ? "[dim]none[/]" : Markup.Escape(string.Join(", ", r.Shards.SelectMany(s => s.Entities))));
            table.AddRow(new Markup(node), new Text(r.Address), new Text(r.TypeName),
                new Text(r.Problem is null ? r.Shards.Count.ToString() : "-"), entities);
        }
        return table;
    }
}
