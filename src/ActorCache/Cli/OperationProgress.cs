using ActorCache.Admin.Api;
using Spectre.Console;

namespace ActorCache.Cli;

/// <summary>
/// Follows long work on the node (<c>GET /api/operations/ID</c>) until it ends: a progress bar on a
/// terminal (a spinner when the work cannot say how far it is), nothing on a pipe. A failure is the
/// node's message.
/// </summary>
public static class OperationProgress
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    public static async Task<OperationInfo> WaitAsync(AdminClient client, OperationInfo started, CliOutput output, CancellationToken ct)
    {
        var operation = started;
        if (output.Progress is not { } console)
        {
            while (operation.State == "running") operation = await NextAsync(client, operation, ct);
        }
        else
        {
            await console.Progress()
                .AutoClear(true)
                .Columns(new SpinnerColumn(), new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(),
                    new RemainingTimeColumn())
                .StartAsync(async context =>
                {
                    var task = context.AddTask(Markup.Escape(operation.Description), maxValue: 1);
                    while (true)
                    {
                        task.IsIndeterminate = operation.Total == 0;
                        if (operation.Total > 0)
                        {
                            task.MaxValue = operation.Total;
                            task.Value = operation.Done;
                        }
                        if (operation.State != "running") break;
                        operation = await NextAsync(client, operation, ct);
                    }
                    task.Value = task.MaxValue;
                });
        }
        return operation.State == "failed" ? throw new CliFailure(operation.Error ?? $"{operation.Description} failed") : operation;
    }

    private static async Task<OperationInfo> NextAsync(AdminClient client, OperationInfo operation, CancellationToken ct)
    {
        await Task.Delay(PollInterval, ct);
        return await client.GetOperationAsync(operation.Id, ct);
    }
}
