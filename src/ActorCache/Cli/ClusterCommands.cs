using System.CommandLine;
using Spectre.Console;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache cluster show|leave|down</c>: the node's Akka.NET cluster, in the manner of Petabridge.Cmd's
/// <c>cluster show</c>. Members are named by their node name (<c>serve --node-name</c>) or address.
/// </summary>
public static class ClusterCommands
{
    public static Command Create()
    {
        var options = new NodeOptions();
        var cluster = new Command("cluster",
            "The cluster a running node is in: its members, and a member's graceful leave or the down of one that is gone. The node is " +
            $"--node URL, or the one whose data directory is --data-dir (default {NodeTarget.DefaultDataDir}); leave and down need its admin " +
            "token (DATA_DIR/admin.token, or --token). Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 usage.");
        options.AddTo(cluster);
        cluster.Subcommands.Add(Show(options));
        cluster.Subcommands.Add(Leave(options));
        cluster.Subcommands.Add(Down(options));
        return cluster.WithExamples(
            "actorcache cluster show                       the members as the node in ./data sees them",
            "actorcache cluster leave c --data-dir a       node c leaves gracefully and stops",
            "actorcache cluster down c --data-dir a        c crashed: stop waiting for it");
    }

    private static Command Show(NodeOptions options)
    {
        var command = new Command("show",
            "Every member of the cluster as this node sees it: node name, address, status (Joining, Up, Leaving, Exiting, Down...), " +
            "whether this node reaches it, roles, and the volumes it serves (asked of each reachable member, 2 s at most).");
        options.SetAction(command, async run =>
        {
            var members = await run.Client.ListMembersAsync(run.Cancellation);
            if (run.Output.Json)
            {
                run.Output.WriteJson(members);
                return;
            }
            run.Output.Write(ClusterView.Table(members));
            if (members.FirstOrDefault(m => m.Self) is { Status: "NotJoined" } self)
                run.Output.Say($"[yellow]{Markup.Escape(self.Node)} has not joined a cluster yet[/]: no seed node or contact point has let it in (its /health says why)");
        });
        return command.WithExamples("actorcache cluster show", "actorcache cluster show --json | jq -r '.[] | select(.reachable | not) | .node'");
    }

    private static Command Leave(NodeOptions options)
    {
        var node = new Argument<string?>("NODE")
        {
            Description = "the member to leave, by node name or address (HOST:PORT); default: the node the command talks to",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var command = new Command("leave",
            "A member leaves the cluster gracefully, then stops as on SIGTERM: NBD clients are answered and disconnected, every volume " +
            "is flushed and closed. First, each replicated volume it is primary of is handed to a peer that holds all its data (a clean " +
            "demotion and a promotion: no resync), all within 45 s; one with no such peer in time stays primary there, and the command says so. " +
            "Without NODE, the node the command talks to leaves. The command returns once the leave is under way.") { node };
        options.SetAction(command, async run =>
        {
            var left = await run.Client.LeaveAsync(run.Parsed.GetValue(node), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(left);
            else
            {
                foreach (var handOff in left.HandOffs ?? [])
                    run.Output.Say(handOff.To is { } to
                        ? $"volume [bold]{Markup.Escape(handOff.Volume)}[/]: primary handed over to [bold]{Markup.Escape(to)}[/]"
                        : $"[yellow]volume {Markup.Escape(handOff.Volume)}: stays primary on {Markup.Escape(left.Node)}: {Markup.Escape(handOff.Problem ?? "")}[/]");
                run.Output.Say($"[bold]{Markup.Escape(left.Node)}[/] ({Markup.Escape(left.Address)}) is leaving the cluster; it stops once it has left");
            }
        });
        return command.WithExamples("actorcache cluster leave                       the node in ./data leaves and stops",
            "actorcache cluster leave c --data-dir a       ask c, through node a");
    }

    private static Command Down(NodeOptions options)
    {
        var node = new Argument<string>("NODE") { Description = "the unreachable member to mark down, by node name or address (HOST:PORT)" };
        var command = new Command("down",
            "Mark an unreachable member down (it crashed or is cut off): the cluster stops waiting for it and removes it. Refused for a " +
            "member this node reaches: use leave. The split-brain resolver does the same by itself after stable-after (20 s by default).") { node };
        options.SetAction(command, async run =>
        {
            var downed = await run.Client.DownAsync(run.Parsed.GetRequiredValue(node), run.Cancellation);
            if (run.Output.Json) run.Output.WriteJson(downed);
            else run.Output.Say($"[bold]{Markup.Escape(downed.Node)}[/] ({Markup.Escape(downed.Address)}) is marked down; the cluster removes it");
        });
        return command.WithExamples("actorcache cluster down c", "actorcache cluster down 10.0.0.7:4053 --node http://10.0.0.5:9460 --token \"$TOKEN\"");
    }
}
