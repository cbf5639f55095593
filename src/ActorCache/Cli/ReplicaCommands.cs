using System.CommandLine;
using ActorCache.Admin.Api;
using Spectre.Console;

namespace ActorCache.Cli;

/// <summary>
/// The replicated volume's verbs of <c>actorcache volume</c>: promote, demote, protocol (in the manner of
/// drbdadm primary/secondary and net protocol). Any replica's node may be asked; the change is made on
/// the node it concerns and told to the others.
/// </summary>
public static class ReplicaCommands
{
    public static Command Promote(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var force = new Option<bool>("--force")
        {
            Description = "promote even though the node's data is not UpToDate (it may lack acknowledged writes); the other replicas then resync from it",
        };
        var command = new Command("promote",
            "Make a replica the volume's primary: it serves the volume over NBD read-write and ships its writes to the others. --node NAME picks the " +
            "replica (default: the node the command talks to). Refused while another primary is up (demote it first) and, without --force, when " +
            "the replica's data is not UpToDate.") { name, force };
        NodeOptions.TakesNodeName(command);
        options.SetAction(command, async run =>
        {
            var volume = await run.Client.PromoteAsync(run.Parsed.GetRequiredValue(name), options.NamedNode(run.Parsed), run.Parsed.GetValue(force), run.Cancellation);
            Report(run, volume, "promoted");
        });
        return command.WithExamples("actorcache volume promote r --node b --data-dir b      a is gone: b serves r",
            "actorcache volume promote r --node c --force --data-dir c");
    }

    public static Command Demote(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var command = new Command("demote",
            "The primary becomes a secondary: its NBD clients are disconnected and no node serves the volume until one is promoted. " +
            "--node NAME names the primary (default: the primary the node asked knows of).") { name };
        NodeOptions.TakesNodeName(command);
        options.SetAction(command, async run =>
        {
            var volume = await run.Client.DemoteAsync(run.Parsed.GetRequiredValue(name), options.NamedNode(run.Parsed), run.Cancellation);
            Report(run, volume, "demoted");
        });
        return command.WithExamples("actorcache volume demote r --data-dir a", "actorcache volume promote r --node b --data-dir b");
    }

    public static Command DiscardMyData(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var command = new Command("discard-my-data",
            "Resolve a split brain by giving up this node's side (drbdadm connect --discard-my-data): the volume as it is here is kept as snapshot " +
            "NAME@split-brain-TIME on this node, its NBD clients are disconnected, and it becomes a secondary of the newer primary and is resynced from it.") { name };
        options.SetAction(command, async run =>
        {
            var volume = await run.Client.DiscardMyDataAsync(run.Parsed.GetRequiredValue(name), run.Cancellation);
            Report(run, volume, "discarded this node's data");
        });
        return command.WithExamples("actorcache volume discard-my-data r --data-dir a", "actorcache snapshot list r --data-dir a");
    }

    public static Command Protocol(NodeOptions options)
    {
        var name = VolumeCommands.NameArgument("the replicated volume");
        var protocol = new Argument<string>("PROTOCOL")
        {
            Description = "A: FLUSH waits for the local log, peers catch up; B: and for every connected peer's receipt; C: and for every connected peer's log",
        };
        protocol.Validators.Add(result =>
        {
            if (result.GetValue(protocol) is { } text && !ActorCache.Replicas.ReplicaSet.TryParseProtocol(text, out _, out var error)) result.AddError(error);
        });
        var command = new Command("protocol", "Switch a replicated volume's protocol live, under load; every replica records it.") { name, protocol };
        options.SetAction(command, async run =>
        {
            var volume = await run.Client.SetProtocolAsync(run.Parsed.GetRequiredValue(name), run.Parsed.GetRequiredValue(protocol), run.Cancellation);
            Report(run, volume, "protocol set");
        });
        return command.WithExamples("actorcache volume protocol r A", "actorcache volume protocol r C --data-dir b");
    }

    private static void Report(CommandRun run, VolumeInfo volume, string what)
    {
        if (run.Output.Json)
        {
            run.Output.WriteJson(volume);
            return;
        }
        if (volume.Replication is not { } r)
        {
            run.Output.Say($"{what}: {Markup.Escape(volume.Name)}");
            return;
        }
        run.Output.Say($"{what}: [bold]{Markup.Escape(volume.Name)}[/] primary {(r.Primary.Length > 0 ? Markup.Escape(r.Primary) : "none")}, " +
                       $"protocol {r.Protocol}, replicas {Markup.Escape(string.Join(",", r.Replicas))} (epoch {r.Epoch})");
    }
}
