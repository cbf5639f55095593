using ActorCache.Admin.Api;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorCache.Admin;

/// <summary><c>/api/operations</c>: the long work admin requests started, to poll until it is done.</summary>
public static class OperationEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var operations = api.MapGroup("/operations");
        operations.MapGet("", (AdminOperations all) =>
            Results.Json(all.List().Select(o => o.Info()).ToList(), ApiJson.Wire.IReadOnlyListOperationInfo));
        operations.MapGet("/{id}", (string id, AdminOperations all) =>
            all.Find(id) is { } operation
                ? Results.Json(operation.Info(), ApiJson.Wire.OperationInfo)
                : ApiErrors.Error(StatusCodes.Status404NotFound, $"no operation {id}; the node keeps the last 100 finished ones until it restarts"));
    }
}
