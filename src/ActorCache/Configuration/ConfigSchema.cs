using ActorCache.Hosting;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace ActorCache.Configuration;

/// <summary>
/// The keys a node understands: those of the reference file (hocon/actorcache.conf), which is the
/// schema. A key under <c>actorcache</c> that the reference lacks is a mistake (a typo would otherwise
/// be ignored and its default used), refused with the closest known key. <c>akka</c> is Akka's own
/// and stays free-form, as does the cache's dispatcher block (Akka dispatcher settings).
/// </summary>
public sealed class ConfigSchema
{
    private const string Root = "actorcache";
    private static readonly string[] FreeForm = ["actorcache.cache.log-dispatcher"];

    // Every path of the reference under actorcache, each with whether it is a block { ... }.
    private readonly Dictionary<string, bool> _paths = new(StringComparer.Ordinal);

    public ConfigSchema(Config reference)
    {
        Collect(reference.Root, "");
    }

    private void Collect(HoconValue value, string path)
    {
        var block = HoconText.IsBlock(value);
        if (path.Length > 0) _paths[path] = block;
        if (!block) return;
        foreach (var (key, child) in value.GetObject().Items) Collect(child, path.Length == 0 ? key : $"{path}.{key}");
    }

    /// <summary>Refuses any key in <paramref name="config"/> (one source: a file or a --set) the reference does not have.</summary>
    public void Check(Config config, string origin)
    {
        if (config.Root is null || config.IsEmpty) return;
        foreach (var (key, value) in config.Root.GetObject().Items)
        {
            if (key == Root) CheckBlock(value, Root, origin);
            else if (key != "akka" && Distance(key, Root) <= 3)
                throw new SettingsException($"{origin}: unknown key {key}; did you mean {Root}?");
        }
    }

    private void CheckBlock(HoconValue value, string path, string origin)
    {
        if (!HoconText.IsBlock(value))
            throw new SettingsException($"{origin}: {path} is a block of settings ({path} {{ ... }}), not a value");
        foreach (var (key, child) in value.GetObject().Items)
        {
            var childPath = $"{path}.{key}";
            if (FreeForm.Contains(childPath)) continue;
            if (!_paths.TryGetValue(childPath, out var isBlock))
                throw new SettingsException($"{origin}: unknown key {childPath}{Suggest(childPath)}");
            if (isBlock) CheckBlock(child, childPath, origin);
            else if (HoconText.IsBlock(child))
                throw new SettingsException($"{origin}: {childPath} is a single setting, not a block; write {childPath} = VALUE");
        }
    }

    /// <summary>"; did you mean X?" for the known setting closest to <paramref name="path"/>, when one is close enough to be a typo or a misplaced key.</summary>
    private string Suggest(string path)
    {
        var leaf = path[(path.LastIndexOf('.') + 1)..];
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var (known, isBlock) in _paths)
        {
            if (isBlock) continue;
            var distance = Distance(path, known);
            // The same setting in another block (actorcache.ring-size for actorcache.cache.ring-size) counts as close.
            if (known.EndsWith("." + leaf, StringComparison.Ordinal)) distance = Math.Min(distance, 1);
            if (distance < bestDistance)
            {
                best = known;
                bestDistance = distance;
            }
        }
        return best is not null && bestDistance <= Math.Max(2, leaf.Length / 3)
            ? $"; did you mean {best}?"
            : "; hocon/actorcache.conf lists every setting";
    }

    /// <summary>Levenshtein distance.</summary>
    public static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
