using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// The real <c>actorcache</c> command line, run the way a user runs it (<c>dotnet ActorCache.dll volume ...</c>),
/// from the same build output as the node. Output is redirected, so it is plain text: no colours, no progress.
/// </summary>
public static class Cli
{
    public static Task<ToolResult> RunAsync(params string[] args) =>
        Tool.RunAsync("dotnet", [NodeProcess.NodeDll, .. args], TimeSpan.FromMinutes(3));

    /// <summary>A command against <paramref name="node"/>, found through its data directory like a user on the same machine would.</summary>
    public static Task<ToolResult> RunAsync(NodeProcess node, params string[] args) => RunAsync([.. args, "--data-dir", node.DataDir]);

    /// <summary>A command that must succeed; returns its stdout.</summary>
    public static async Task<string> CheckAsync(NodeProcess node, params string[] args)
    {
        var result = await RunAsync(node, args);
        if (result.ExitCode != 0) throw new Xunit.Sdk.XunitException($"actorcache {string.Join(' ', args)} exited {result.ExitCode}:\n{result.Output}");
        return result.Stdout;
    }

    /// <summary>A command with <c>--json</c> that must succeed; returns what it printed, parsed.</summary>
    public static async Task<JsonElement> JsonAsync(NodeProcess node, params string[] args) =>
        JsonDocument.Parse(await CheckAsync(node, [.. args, "--json"])).RootElement;

    /// <summary>A command that must be refused with <paramref name="exitCode"/>: one line on stderr, no stack trace; returns that line.</summary>
    public static async Task<string> RefusedAsync(int exitCode, Task<ToolResult> running)
    {
        var result = await running;
        Assert.True(result.ExitCode == exitCode, $"expected exit {exitCode}, got {result.ExitCode}:\n{result.Output}");
        Assert.StartsWith("actorcache: ", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr); // no stack trace
        if (exitCode == 1) Assert.Single(result.Stderr.TrimEnd('\n').Split('\n')); // one line: what happened and what to do
        Assert.Equal("", result.Stdout);
        return result.Stderr.TrimEnd('\n');
    }
}
