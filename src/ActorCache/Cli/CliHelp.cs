using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Runtime.CompilerServices;

namespace ActorCache.Cli;

/// <summary>Examples at the end of a command's <c>--help</c>: what a user types, and what it does.</summary>
public static class CliHelp
{
    private static readonly ConditionalWeakTable<Command, string[]> Examples = new();

    public static T WithExamples<T>(this T command, params string[] examples) where T : Command
    {
        Examples.AddOrUpdate(command, examples);
        return command;
    }

    /// <summary>Makes <c>--help</c> print the examples of the command it describes after System.CommandLine's own help.</summary>
    public static void Install(RootCommand root)
    {
        foreach (var option in root.Options.OfType<HelpOption>())
            if (option.Action is SynchronousCommandLineAction help) option.Action = new WithExamplesAction(help);
    }

    private sealed class WithExamplesAction(SynchronousCommandLineAction help) : SynchronousCommandLineAction
    {
        // Help for a command whose required arguments are missing is help, not a usage error.
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            var exit = help.Invoke(parseResult);
            if (!Examples.TryGetValue(parseResult.CommandResult.Command, out var examples)) return exit;
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Examples:");
            foreach (var example in examples) output.WriteLine($"  {example}");
            output.WriteLine();
            return exit;
        }
    }
}
