using ActorCache.Admin;

namespace ActorCache.Cli;

/// <summary>
/// Which node a command talks to, and the token it shows for changes. The node: <c>--node URL</c>, else
/// the <c>admin.url</c> the node wrote into its data directory (<c>--data-dir DIR</c>, default
/// <c>./data</c>). The token: <c>--token</c>, else that data directory's <c>admin.token</c>.
/// </summary>
/// <param name="TokenNote">Where the token came from, or why there is none (said when the node refuses it).</param>
public sealed record NodeTarget(Uri Url, string? Token, string TokenNote)
{
    public const string DefaultDataDir = "./data";

    public static NodeTarget Resolve(Uri? node, string? dataDir, string? token, string defaultDataDir = DefaultDataDir)
    {
        var directory = Path.GetFullPath(dataDir ?? defaultDataDir);
        var url = node ?? ReadUrl(directory, dataDir is null);
        if (token is not null) return new NodeTarget(url, token, "the token given with --token");
        var tokenFile = Path.Combine(directory, AdminToken.FileName);
        // --node alone: the default data directory's token is that node's only if its admin.url names the same listener; it is
        // never handed to another URL (a mistyped or foreign host would get a working token for the local node).
        if (node is not null && dataDir is null && !NamesListener(directory, node))
            return new NodeTarget(url, null, $"no token: --node {node} is not the node of {directory}; give --token, or --data-dir with the node's data directory");
        try
        {
            return new NodeTarget(url, File.ReadAllText(tokenFile).Trim(), $"the token read from {tokenFile}");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return new NodeTarget(url, null, $"no token: {tokenFile} does not exist; give --token, or --data-dir with the node's data directory");
        }
        catch (UnauthorizedAccessException)
        {
            return new NodeTarget(url, null, $"no token: {tokenFile} is readable by the node's user only; run as that user or give --token");
        }
    }

    /// <summary>Whether <c>admin.url</c> in <paramref name="directory"/> names the listener at <paramref name="node"/>.</summary>
    private static bool NamesListener(string directory, Uri node)
    {
        try
        {
            return TryParseUrl(File.ReadAllText(Path.Combine(directory, AdminUrlFile.FileName)).Trim(), out var url, out _) &&
                   Uri.Compare(url, node, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static Uri ReadUrl(string directory, bool defaultDirectory)
    {
        var file = Path.Combine(directory, AdminUrlFile.FileName);
        string text;
        try
        {
            text = File.ReadAllText(file).Trim();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CliFailure(defaultDirectory
                ? $"no node to talk to: {file} does not exist; is a node running with data directory {directory}? Give --data-dir DIR or --node URL"
                : $"no node to talk to: {file} does not exist; is a node running there?");
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliFailure($"cannot read {file}; give --node URL");
        }
        return TryParseUrl(text, out var url, out _) ? url! : throw new CliFailure($"{file} does not hold the node's URL ('{text}'); give --node URL");
    }

    /// <summary>An admin listener's URL: <c>http://HOST:PORT</c> (what <c>admin.url</c> holds).</summary>
    public static bool TryParseUrl(string text, out Uri? url, out string error)
    {
        error = "";
        if (Uri.TryCreate(text, UriKind.Absolute, out url) && url.Scheme is "http" or "https" && url.Host.Length > 0) return true;
        url = null;
        error = $"--node '{text}' is not a node's admin URL; write http://HOST:PORT, e.g. http://127.0.0.1:9460 (the node writes it to DATA_DIR/admin.url)";
        return false;
    }
}
