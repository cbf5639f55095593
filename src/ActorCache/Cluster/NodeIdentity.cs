using System.Text.RegularExpressions;
using ActorCache.Hosting;

namespace ActorCache.Cluster;

/// <summary>
/// The node's name in the cluster, kept in <c>DATA_DIR/node.name</c> from its first start on: a restarted
/// node comes back under the same name whatever the host is called now, and a data directory is never
/// started as another node (as DRBD refuses a resource whose node id does not match its metadata).
/// </summary>
public static partial class NodeIdentity
{
    public const string FileName = "node.name";

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    public static string NameError(string name, string origin) =>
        $"{origin}: '{name}' is not a node name; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. node-a";

    /// <summary>The host name, as the default node name (made a valid name: its first label, e.g. "web1" of "web1.example.com").</summary>
    public static string HostName()
    {
        var host = Environment.MachineName;
        var label = host.Split('.')[0];
        return IsValidName(label) ? label : "node";
    }

    /// <summary>
    /// The name this start runs under: the one recorded in the data directory, or the one asked for when
    /// the directory has none yet. Asking for another name than the recorded one is refused.
    /// </summary>
    public static string Resolve(NodeSettings settings)
    {
        var recorded = Read(settings.DataDir);
        if (recorded is null) return settings.NodeName;
        if (settings.NodeNameOrigin is { } origin && recorded != settings.NodeName)
            throw new SettingsException(
                $"data directory {settings.DataDir} belongs to node '{recorded}' ({Path.Combine(settings.DataDir, FileName)}), not '{settings.NodeName}' " +
                $"as {origin} asks; start it as '{recorded}' (or without {(origin.StartsWith("--", StringComparison.Ordinal) ? "--node-name" : "that setting")}), " +
                "or give the new node a data directory of its own");
        return recorded;
    }

    /// <summary>The recorded name, or null when the directory has none (a first start).</summary>
    public static string? Read(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        string text;
        try
        {
            text = File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SettingsException($"cannot read the node's name from {path}: {e.Message}");
        }
        if (!IsValidName(text))
            throw new SettingsException($"{path} holds '{text}', which is not a node name; put the node's name back in it (one line, e.g. node-a)");
        return text;
    }

    /// <summary>Records the name once the first start has succeeded (a start that fails leaves no file behind).</summary>
    public static void Record(string dataDir, string name)
    {
        var path = Path.Combine(dataDir, FileName);
        if (File.Exists(path)) return;
        var temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            file.Write(System.Text.Encoding.UTF8.GetBytes(name + "\n"));
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, path);
    }
}
