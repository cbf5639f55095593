using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace ActorCache.Admin;

/// <summary>
/// A Prometheus histogram labelled by volume whose counts are kept elsewhere: the cache counts FLUSH latencies into fixed
/// buckets on its hot path, and prometheus-net's Histogram can only observe values itself. So the counts are copied at
/// scrape time and the family is written here, in the text exposition format, after the registry's own.
/// </summary>
public sealed class ExternalHistogram
{
    private readonly string _name, _help;
    private readonly string[] _le;
    private readonly ConcurrentDictionary<string, (IReadOnlyList<long> Cumulative, double Sum)> _volumes = new();

    /// <param name="upperBounds">The finite bucket bounds, ascending; a +Inf bucket follows them.</param>
    public ExternalHistogram(string name, string help, IReadOnlyList<double> upperBounds)
    {
        _name = name;
        _help = help;
        _le = [.. upperBounds.Select(b => b.ToString("0.############", CultureInfo.InvariantCulture)), "+Inf"];
    }

    /// <summary>A volume's cumulative counts, one per bound and then +Inf (all of them), and the sum of what they counted.</summary>
    public void Set(string volume, IReadOnlyList<long> cumulative, double sum)
    {
        if (cumulative.Count != _le.Length)
            throw new ArgumentException($"{_name}: {cumulative.Count} bucket counts for {_le.Length} buckets", nameof(cumulative));
        _volumes[volume] = (cumulative, sum);
    }

    /// <summary>A volume that has gone leaves no series behind.</summary>
    public void Remove(string volume) => _volumes.TryRemove(volume, out _);

    /// <summary>The family as the text format has it: HELP and TYPE, then per volume (by name) its buckets, _sum and _count.</summary>
    public string Text()
    {
        var text = new StringBuilder();
        text.Append("# HELP ").Append(_name).Append(' ').Append(_help.Replace("\\", @"\\").Replace("\n", @"\n")).Append('\n');
        text.Append("# TYPE ").Append(_name).Append(" histogram\n");
        foreach (var (volume, (cumulative, sum)) in _volumes.OrderBy(v => v.Key, StringComparer.Ordinal))
        {
            var label = "volume=\"" + volume.Replace("\\", @"\\").Replace("\"", "\\\"").Replace("\n", @"\n") + "\"";
            for (var i = 0; i < _le.Length; i++)
                text.Append(_name).Append("_bucket{").Append(label).Append(",le=\"").Append(_le[i]).Append("\"} ")
                    .Append(cumulative[i].ToString(CultureInfo.InvariantCulture)).Append('\n');
            text.Append(_name).Append("_sum{").Append(label).Append("} ").Append(sum.ToString(CultureInfo.InvariantCulture)).Append('\n');
            // The +Inf bucket, not a count read at another moment: _count and le="+Inf" must agree.
            text.Append(_name).Append("_count{").Append(label).Append("} ").Append(cumulative[^1].ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        return text.ToString();
    }
}
