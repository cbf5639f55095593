using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Prometheus;

namespace ActorCache.Admin;

/// <summary>
/// The admin listener's routes: Prometheus metrics and the health checks a load balancer or Kubernetes
/// probes, and the JSON API under <c>/api</c> that the command line talks to, one group per noun.
/// </summary>
public static class AdminEndpoints
{
    public static void Map(WebApplication app)
    {
        app.MapGet("/metrics", async (HttpContext context, NodeMetrics metrics) =>
        {
            context.Response.ContentType = PrometheusConstants.TextContentTypeWithVersionAndEncoding;
            await metrics.ExportAsTextAsync(context.Response.Body, context.RequestAborted);
        });

        // Readiness: every volume online and not degraded, the node in its cluster, and every secondary replica
        // here in sync with its primary. 503 lists what is wrong, one line per volume and reason (and one for the cluster).
        app.MapGet("/health", async (VolumeStatusReader volumes, ActorCache.Cluster.ClusterJoinWatch cluster, NodeMetrics metrics,
            ActorCache.Replicas.ReplicatedVolumes replicated, CancellationToken cancellationToken) =>
        {
            var problems = (await volumes.ReadAsync(cancellationToken)).SelectMany(VolumeHealth.Problems).Concat(cluster.Problems())
                .Concat(metrics.ReplicationProblems()).Concat(await replicated.SecondaryProblemsAsync(cancellationToken)).ToList();
            return problems.Count == 0
                ? Results.Text("ok\n")
                : Results.Text(string.Join('\n', problems) + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        });

        // Liveness: answered by the process itself, so a node busy with a degraded volume is not restarted for it.
        app.MapGet("/health/live", () => Results.Text("ok\n"));

        var api = app.MapGroup("/api");
        api.AddEndpointFilter<ApiErrors>();
        VolumeEndpoints.Map(api);
        VolumeEndpoints.MapReplication(api);
        SnapshotEndpoints.Map(api);
        OperationEndpoints.Map(api);
        ClusterEndpoints.Map(api);
        ActorEndpoints.Map(api);
        ShardingEndpoints.Map(api);
        api.MapFallback("{**path}", (HttpRequest request) =>
            ApiErrors.Error(StatusCodes.Status404NotFound, $"no such endpoint: {request.Method} {request.Path}; the README lists the admin API"));
    }
}
