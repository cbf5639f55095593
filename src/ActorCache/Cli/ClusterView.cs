using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>The cluster for people: the table of <c>cluster show</c>, the same facts as its JSON.</summary>
public static class ClusterView
{
    public static IRenderable Table(IReadOnlyList<MemberInfo> members)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumns("NODE", "ADDRESS", "STATUS", "REACHABLE", "ROLES", "VOLUMES");
        foreach (var m in members)
        {
            var node = Markup.Escape(m.Node) + (m.Self ? " [dim](this node)[/]" : "") + (m.Leader ? " [dim](leader)[/]" : "");
            table.AddRow(
                new Markup(node),
                new Text(m.Address),
                new Markup(Status(m.Status)),
                new Markup(m.Reachable ? "[green]yes[/]" : "[red]no[/]"),
                new Text(m.Roles.Count == 0 ? "-" : string.Join(",", m.Roles)),
                new Text(!m.VolumesKnown ? (m.Reachable ? "(no answer)" : "-") : m.Volumes.Count == 0 ? "none" : string.Join(", ", m.Volumes)));
        }
        return table;
    }

    private static string Status(string status) => status switch
    {
        "Up" => "[green]Up[/]",
        "Joining" or "WeaklyUp" or "Leaving" or "Exiting" => $"[yellow]{status}[/]",
        _ => $"[red]{Markup.Escape(status)}[/]",
    };
}
