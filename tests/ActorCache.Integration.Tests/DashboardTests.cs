using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace ActorCache.Integration.Tests;

/// <summary>
/// The Grafana dashboard in <c>k8s/grafana</c> against a real node's <c>/metrics</c>: every metric its PromQL
/// reads must be one the node exports, so a renamed or removed metric fails here rather than as an empty panel.
/// </summary>
public sealed partial class DashboardTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static string GrafanaDir => Path.Combine(RepositoryRoot(), "k8s", "grafana");

    [Fact]
    public async Task Every_metric_the_dashboard_queries_is_exported_by_a_node()
    {
        var dashboard = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(GrafanaDir, "actorcache-dashboard.json")))!;
        var queries = Queries(dashboard).ToList();
        Assert.True(queries.Count >= 20, $"the dashboard has only {queries.Count} queries");
        var referenced = queries.SelectMany(MetricNames).ToHashSet();
        Assert.True(referenced.Count >= 25, "metric names found in the queries: " + string.Join(", ", referenced));

        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M:write-back");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var exported = ExportedNames(await http.GetStringAsync(node.AdminUrl + "/metrics"));

        var missing = referenced.Where(n => !exported.Contains(n)).Order().ToList();
        Assert.True(missing.Count == 0,
            $"the dashboard queries metrics the node does not export: {string.Join(", ", missing)}\n(exported: {string.Join(", ", exported.Order())})");
    }

    [Fact]
    public async Task The_config_map_carries_the_dashboard_for_the_grafana_sidecar()
    {
        var yaml = await File.ReadAllLinesAsync(Path.Combine(GrafanaDir, "dashboard-configmap.yaml"));
        Assert.Contains("kind: ConfigMap", yaml);
        Assert.Contains("    grafana_dashboard: \"1\"", yaml);
        var key = Array.IndexOf(yaml, "  actorcache-dashboard.json: |");
        Assert.True(key > 0, "the ConfigMap has no data key actorcache-dashboard.json");
        var embedded = string.Join('\n', yaml.Skip(key + 1).TakeWhile(l => l.Length == 0 || l.StartsWith("    ")).Select(l => l.Length == 0 ? l : l[4..]));
        var file = await File.ReadAllTextAsync(Path.Combine(GrafanaDir, "actorcache-dashboard.json"));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(file), JsonNode.Parse(embedded)),
            "k8s/grafana/dashboard-configmap.yaml does not carry the same JSON as actorcache-dashboard.json");
    }

    [Fact]
    public void Metric_names_are_found_in_promql_and_nothing_else_is()
    {
        Assert.Equal(["a_total", "b_seconds"],
            MetricNames("sum by (volume, stage) (rate(a_total{volume=~\"$volume\", x=\"y z\"}[$__rate_interval])) / on (volume) group_left max without (q) (b_seconds offset 5m) * 4096 > bool 1e6").Order());
        Assert.Equal(["m"], MetricNames("label_values(m{instance=~\"$instance\"}, volume)"));
        Assert.Equal(["up"], MetricNames("time() - (up > 0)"));
    }

    /// <summary>Every PromQL query of the dashboard: its panels' targets (rows' nested panels too) and its template variables.</summary>
    private static IEnumerable<string> Queries(JsonNode dashboard)
    {
        IEnumerable<JsonNode> Panels(JsonArray? panels) =>
            (panels ?? []).OfType<JsonNode>().SelectMany(p => new[] { p }.Concat(Panels(p["panels"] as JsonArray)));
        foreach (var panel in Panels(dashboard["panels"] as JsonArray))
        foreach (var target in (panel["targets"] as JsonArray ?? []).OfType<JsonNode>())
            if (target["expr"]?.GetValue<string>() is { Length: > 0 } expr) yield return expr;
        foreach (var variable in (dashboard["templating"]?["list"] as JsonArray ?? []).OfType<JsonNode>())
        {
            if (variable["type"]?.GetValue<string>() != "query") continue;
            var query = variable["query"] is JsonObject o ? o["query"]?.GetValue<string>() : variable["query"]?.GetValue<string>();
            if (query is { Length: > 0 }) yield return query;
        }
    }

    /// <summary>
    /// The metric names a PromQL expression (or a Grafana <c>label_values(METRIC, LABEL)</c>) reads: identifiers
    /// that are not functions, keywords, label names (in matchers, grouping and joins), strings or durations.
    /// </summary>
    private static IEnumerable<string> MetricNames(string query)
    {
        var expr = LabelValues().Replace(query, "$1");
        expr = Strings().Replace(expr, " ");
        expr = Braces().Replace(expr, " ");
        expr = Ranges().Replace(expr, " ");
        expr = Grouping().Replace(expr, " ");
        expr = Offset().Replace(expr, " ");
        return Identifiers().Matches(expr).Select(m => m.Value).Where(n => !Keywords.Contains(n)).Distinct();
    }

    private static readonly HashSet<string> Keywords = ["and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "inf", "nan"];

    [GeneratedRegex(@"label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)")] private static partial Regex LabelValues();
    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"")] private static partial Regex Strings();
    [GeneratedRegex(@"\{[^}]*\}")] private static partial Regex Braces();
    [GeneratedRegex(@"\[[^\]]*\]")] private static partial Regex Ranges();
    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")] private static partial Regex Grouping();
    [GeneratedRegex(@"\boffset\s+\S+")] private static partial Regex Offset();
    // Not after a digit or a dot (1e6, 0.5), nor a $ (Grafana variables); not followed by ( (functions, aggregations).
    [GeneratedRegex(@"(?<![0-9A-Za-z_:.$])[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:]|\s*\()")] private static partial Regex Identifiers();

    /// <summary>The metric families in a Prometheus text exposition: each sample's name, and each TYPE line's (a labelled family may have no series yet).</summary>
    private static HashSet<string> ExportedNames(string text)
    {
        var names = new HashSet<string>();
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("# TYPE ")) names.Add(line.Split(' ')[2]);
            else if (line.Length > 0 && line[0] != '#') names.Add(line[..line.IndexOfAny(['{', ' '])]);
        }
        return names;
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ActorCache.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root above " + AppContext.BaseDirectory);
    }
}
