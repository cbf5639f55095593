using System.CommandLine;
using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>
/// <c>actorcache actors</c>: a running node's actor hierarchy with each actor's type and queued messages, in the
/// manner of Petabridge.Cmd's <c>actor hierarchy</c>: volume actors with their flusher and destager, the cluster's.
/// </summary>
public static class ActorCommands
{
    public static Command Create()
    {
        var options = new NodeOptions();
        var depth = new Option<int?>("--depth")
        {
            Description = "levels to show below /user (and /system): 1 is the top-level actors only (default: all)",
            HelpName = "N",
            Validators =
            {
                result =>
                {
                    if (result.GetValueOrDefault<int?>() is < 1) result.AddError("--depth must be 1 or more");
                },
            },
        };
        var system = new Option<bool>("--system") { Description = "also show /system (Akka's own actors: remoting, cluster, persistence)" };
        var command = new Command("actors",
            "The actor hierarchy of a running node: each actor's path, type and the messages waiting in its mailbox, read from Akka's " +
            "cells without messaging the actors (a blocked actor shows its queue). The node is --node URL, or the one whose data " +
            $"directory is --data-dir (default {NodeTarget.DefaultDataDir}). Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.")
        {
            depth, system,
        };
        options.AddTo(command);
        options.SetAction(command, async run =>
        {
            var levels = run.Parsed.GetValue(depth);
            var roots = await run.Client.GetActorsAsync(levels, run.Parsed.GetValue(system), run.Cancellation);
            if (run.Output.Json)
            {
                run.Output.WriteJson(roots);
                return;
            }
            foreach (var root in roots) run.Output.Write(Tree(root));
        });
        return command.WithExamples(
            "actorcache actors                           every actor under /user with its mailbox",
            "actorcache actors --depth 2 --system        two levels under /user and /system",
            "actorcache actors --json | jq '.. | objects | select(.mailbox > 100) | .path'");
    }

    private static IRenderable Tree(ActorInfo root)
    {
        var tree = new Tree(Label(root, root.Path)) { Guide = TreeGuide.Line };
        foreach (var child in root.Children) Add(tree, child);
        return tree;
    }

    private static void Add(IHasTreeNodes parent, ActorInfo actor)
    {
        var node = parent.AddNode(Label(actor, actor.Path[(actor.Path.LastIndexOf('/') + 1)..]));
        foreach (var child in actor.Children) Add(node, child);
        if (actor.Children.Count < actor.ChildCount)
            node.AddNode(new Markup($"[dim]({actor.ChildCount - actor.Children.Count} more below --depth)[/]"));
    }

    private static Markup Label(ActorInfo actor, string name)
    {
        var mailbox = actor.Mailbox switch
        {
            null => "[dim]mailbox -[/]",
            0 => "[dim]mailbox 0[/]",
            var n => $"[yellow]mailbox {n}[/]",
        };
        var type = actor.Type is null ? "" : $"  [blue]{Markup.Escape(ShortType(actor.Type))}[/]";
        return new Markup($"[bold]{Markup.Escape(name)}[/]{type}  {mailbox}");
    }

    /// <summary>The class without its namespace (the JSON has the full name).</summary>
    private static string ShortType(string type) => type[(type.LastIndexOf('.') + 1)..];
}
