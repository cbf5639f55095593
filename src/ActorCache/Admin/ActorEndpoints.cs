using ActorCache.Admin.Api;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorCache.Admin;

/// <summary><c>GET /api/actors</c>: the node's actor hierarchy with mailbox sizes (read-only, no token).</summary>
public static class ActorEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapGet("/actors", (HttpRequest request, ActorTree tree) =>
        {
            int? depth = null;
            if (request.Query["depth"] is { Count: > 0 } text)
            {
                if (!int.TryParse(text.ToString(), out var parsed) || parsed < 0)
                    throw new BadApiRequestException($"depth must be a whole number of levels, 0 or more, not '{text}'");
                depth = parsed;
            }
            var system = request.Query["system"] is { Count: > 0 } flag && flag.ToString() is "true" or "1";
            return Results.Json(tree.Read(depth, system), ApiJson.Wire.IReadOnlyListActorInfo);
        });
    }
}
