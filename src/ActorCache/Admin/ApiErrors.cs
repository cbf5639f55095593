using ActorCache.Admin.Api;
using ActorCache.Hosting;
using ActorCache.Volumes;
using Akka.Actor;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace ActorCache.Admin;

/// <summary>A request the API cannot take as sent (malformed JSON, a missing or bad field): 400.</summary>
public sealed class BadApiRequestException(string message) : Exception(message);

/// <summary>
/// Turns what an admin API handler throws into <c>{"error": "..."}</c> with the status that says whose
/// mistake it was: 400 a bad request, 404 an unknown volume, 409 a conflict with the node's state, 500
/// anything unexpected (its trace goes to the debug log, never into the answer).
/// </summary>
public sealed class ApiErrors(ILogger<ApiErrors> logger) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (Exception e) when (e is not OperationCanceledException || !context.HttpContext.RequestAborted.IsCancellationRequested)
        {
            var (status, message) = e switch
            {
                BadApiRequestException or VolumeConflictException => (e is VolumeConflictException ? StatusCodes.Status409Conflict : StatusCodes.Status400BadRequest, e.Message),
                VolumeNotFoundException or ActorCache.Snapshots.SnapshotNotFoundException => (StatusCodes.Status404NotFound, e.Message),
                ActorCache.Snapshots.SnapshotRefusedException => (StatusCodes.Status409Conflict, e.Message),
                ActorCache.Cluster.ClusterMemberNotFoundException => (StatusCodes.Status404NotFound, e.Message),
                ActorCache.Cluster.ClusterChangeRefusedException => (StatusCodes.Status409Conflict, e.Message),
                ActorCache.Replicas.ReplicaRefusedException => (StatusCodes.Status409Conflict, e.Message),
                SettingsException => (StatusCodes.Status400BadRequest, e.Message),
                AskTimeoutException => (StatusCodes.Status500InternalServerError, $"the node did not answer in time ({e.Message}); a volume may be busy, try again"),
                _ => (StatusCodes.Status500InternalServerError, e.Message),
            };
            if (status == StatusCodes.Status500InternalServerError)
                logger.LogError(e, "admin request {Method} {Path} failed", context.HttpContext.Request.Method, context.HttpContext.Request.Path);
            return Error(status, message);
        }
    }

    public static IResult Error(int status, string message) => Results.Json(new ApiError(message.ReplaceLineEndings(" ")), ApiJson.Wire.ApiError, statusCode: status);
}
