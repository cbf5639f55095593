using ActorCache.Admin.Api;
using ActorCache.Cluster;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace ActorCache.Admin;

/// <summary><c>GET /api/sharding</c>: every member's shard region with its shards and entities (read-only, no token).</summary>
public static class ShardingEndpoints
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapGet("/sharding", async (ShardingView view, HttpContext context) =>
            Results.Json(await view.ReadAsync(context.RequestAborted), ApiJson.Wire.IReadOnlyListShardRegionInfo));
}
