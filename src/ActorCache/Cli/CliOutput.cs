using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using ActorCache.Admin.Api;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ActorCache.Cli;

/// <summary>
/// Where a command's output goes: results on stdout (a table or text for people, the API's JSON with
/// <c>--json</c>), failures on stderr as one line, progress on stderr only when it is a terminal (so
/// pipes and scripts see nothing but the result).
/// </summary>
public sealed class CliOutput(IAnsiConsole stdout, TextWriter stdoutText, TextWriter stderr, IAnsiConsole? progress, bool json)
{
    /// <summary>Wide enough that a table of long backing paths is not wrapped when stdout is a file or a pipe.</summary>
    private const int RedirectedWidth = 200;

    /// <summary><c>--json</c>: print the API's JSON instead of tables and sentences.</summary>
    public bool Json { get; } = json;

    /// <summary>A console for progress bars and spinners, or null when stderr is not a terminal.</summary>
    public IAnsiConsole? Progress { get; } = progress;

    public static CliOutput ForConsole(bool json)
    {
        var stdout = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected) stdout.Profile.Width = RedirectedWidth;
        var progress = Console.IsErrorRedirected ? null : AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        return new CliOutput(stdout, Console.Out, Console.Error, progress, json);
    }

    public void Write(IRenderable renderable) => stdout.Write(renderable);

    /// <summary>The console behind stdout, for a view redrawn in place (<c>top</c>'s live display).</summary>
    public IAnsiConsole Stdout => stdout;

    /// <summary>A sentence for people (markup: escape what the node or the user wrote).</summary>
    public void Say(string markup) => stdout.MarkupLine(markup);

    /// <summary>The API's JSON for <paramref name="value"/>, indented (the field names the README documents).</summary>
    public void WriteJson<T>(T value) =>
        stdoutText.WriteLine(JsonSerializer.Serialize(value, (JsonTypeInfo<T>)ApiJson.Indented.GetTypeInfo(typeof(T))!));

    /// <summary>One line on stderr: what went wrong and, where it helps, what to do.</summary>
    public void Fail(string message) => stderr.WriteLine($"actorcache: {message.ReplaceLineEndings(" ")}");
}
