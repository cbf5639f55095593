using System.Globalization;

namespace ActorCache.Cli;

/// <summary>
/// One scrape of a node's <c>/metrics</c> (Prometheus text format): every sample by metric name and labels.
/// <c>top</c> takes two and divides their differences by the time between them, as <c>rate()</c> does.
/// </summary>
public sealed class MetricsSample
{
    private readonly Dictionary<string, List<(IReadOnlyDictionary<string, string> Labels, double Value)>> _series = [];

    /// <summary>When the scrape came back (<see cref="System.Diagnostics.Stopwatch"/> ticks), for the time between two.</summary>
    public long Timestamp { get; } = System.Diagnostics.Stopwatch.GetTimestamp();

    public static MetricsSample Parse(string text)
    {
        var sample = new MetricsSample();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            if (space <= 0 || !double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value)) continue;
            var series = line[..space];
            var brace = series.IndexOf('{');
            var name = brace < 0 ? series : series[..brace];
            var labels = brace < 0 ? new Dictionary<string, string>() : ParseLabels(series[(brace + 1)..series.LastIndexOf('}')]);
            if (!sample._series.TryGetValue(name, out var list)) sample._series[name] = list = [];
            list.Add((labels, value));
        }
        return sample;
    }

    /// <summary><c>a="x",b="y\"z"</c> (the exposition format escapes \, " and newlines in values).</summary>
    private static Dictionary<string, string> ParseLabels(string text)
    {
        var labels = new Dictionary<string, string>();
        var i = 0;
        while (i < text.Length)
        {
            var eq = text.IndexOf('=', i);
            if (eq < 0) break;
            var key = text[i..eq].Trim(' ', ',');
            var value = new System.Text.StringBuilder();
            var j = eq + 2; // past ="
            for (; j < text.Length && text[j] != '"'; j++)
            {
                if (text[j] == '\\' && j + 1 < text.Length)
                {
                    j++;
                    value.Append(text[j] == 'n' ? '\n' : text[j]);
                }
                else value.Append(text[j]);
            }
            labels[key] = value.ToString();
            i = j + 1;
        }
        return labels;
    }

    /// <summary>The value of <paramref name="name"/> for one volume (summed over its other labels), or null when the node exports none.</summary>
    public double? Volume(string name, string volume)
    {
        if (!_series.TryGetValue(name, out var list)) return null;
        double? sum = null;
        foreach (var (labels, value) in list)
            if (labels.TryGetValue("volume", out var v) && v == volume) sum = (sum ?? 0) + value;
        return sum;
    }

    /// <summary>
    /// A histogram's cumulative buckets for one volume (the series of <paramref name="name"/>, a <c>_bucket</c>, by their
    /// <c>le</c>, summed over other labels), in ascending order; empty when the node exports none.
    /// </summary>
    public IReadOnlyList<HistogramBucket> Buckets(string name, string volume)
    {
        if (!_series.TryGetValue(name, out var list)) return [];
        var counts = new SortedDictionary<double, double>();
        foreach (var (labels, value) in list)
        {
            if (!labels.TryGetValue("volume", out var v) || v != volume || !labels.TryGetValue("le", out var le)) continue;
            var bound = le == "+Inf" ? double.PositiveInfinity
                : double.TryParse(le, NumberStyles.Float, CultureInfo.InvariantCulture, out var b) ? b : double.NaN;
            if (!double.IsNaN(bound)) counts[bound] = counts.GetValueOrDefault(bound) + value;
        }
        return [.. counts.Select(c => new HistogramBucket(c.Key, c.Value))];
    }

    /// <summary>The value of <paramref name="name"/> for one volume with one more label, or null.</summary>
    public string? LabelWhere(string name, string volume, string label, double value) =>
        _series.TryGetValue(name, out var list)
            ? list.FirstOrDefault(s => s.Labels.TryGetValue("volume", out var v) && v == volume && s.Value == value).Labels?.GetValueOrDefault(label)
            : null;

    /// <summary>A series without labels (node-wide), or null.</summary>
    public double? Node(string name) =>
        _series.TryGetValue(name, out var list) && list.FirstOrDefault(s => s.Labels.Count == 0) is { Labels: not null } s ? s.Value : null;

    /// <summary>Every volume that has <paramref name="name"/>, by name.</summary>
    public IReadOnlyList<string> Volumes(string name) =>
        _series.TryGetValue(name, out var list)
            ? list.Select(s => s.Labels.GetValueOrDefault("volume")).OfType<string>().Distinct().Order(StringComparer.Ordinal).ToList()
            : [];
}
