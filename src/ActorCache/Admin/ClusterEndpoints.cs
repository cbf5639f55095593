using ActorCache.Admin.Api;
using ActorCache.Cluster;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using ActorCache.Replicas;
using Microsoft.Extensions.Hosting;

namespace ActorCache.Admin;

/// <summary>
/// <c>/api/cluster</c>: the members of the node's cluster with the volumes each serves, and the two
/// changes an operator makes, a member's graceful leave and the down of one that is gone. Reading is
/// open; both changes need the admin token.
/// </summary>
public static class ClusterEndpoints
{
    public static void Map(RouteGroupBuilder api)
    {
        var cluster = api.MapGroup("/cluster");
        cluster.MapGet("", async (ClusterMembers members, CancellationToken ct) =>
            Results.Json(await members.ReadAsync(ct), ApiJson.Wire.IReadOnlyListMemberInfo));

        // A member other than this node is asked to leave; it stops itself once it has (flushing its
        // volumes). This node leaves the way SIGTERM stops it, once the answer is sent.
        // Its primaries are handed to in-sync peers first (ReplicatedVolumes.HandOffPrimariesAsync), so a rolling
        // restart never leaves a replicated volume without a primary.
        cluster.MapPost("/leave", async (HttpContext context, ClusterMembers members, IHostApplicationLifetime lifetime, ReplicatedVolumes replicated,
            PeerEndpoints peers) =>
        {
            var body = await ApiBody.ReadAsync(context.Request, ApiJson.Wire.ClusterMemberRequest);
            var member = body.Node is null or "" ? null : members.Find(body.Node, members.IsReachable);
            if (member is not null && !member.UniqueAddress.Equals(members.SelfMember()?.UniqueAddress))
            {
                HandOff[] handOffs;
                try
                {
                    handOffs = (await peers.AskAsync<HandOffs>(ClusterMembers.NameOf(member), HandOffPrimaries.Instance, context.RequestAborted, HandOffTimeout))?.Volumes
                               ?? [new HandOff("*", null, $"{ClusterMembers.NameOf(member)} did not answer within {HandOffTimeout.TotalSeconds:0} s; its primaries may stay on it")];
                }
                catch (ReplicaRefusedException e)
                {
                    handOffs = [new HandOff("*", null, e.Message)];
                }
                return Results.Json(members.Leave(member) with { HandOffs = Describe(handOffs) }, ApiJson.Wire.MemberInfo,
                    statusCode: StatusCodes.Status202Accepted);
            }
            var own = await replicated.HandOffPrimariesAsync(context.RequestAborted);
            context.Response.OnCompleted(() =>
            {
                lifetime.StopApplication();
                return Task.CompletedTask;
            });
            return Results.Json(members.DescribeSelf("Leaving") with { HandOffs = Describe(own) }, ApiJson.Wire.MemberInfo,
                statusCode: StatusCodes.Status202Accepted);
        }).AddEndpointFilter<RequireAdminToken>();

        cluster.MapPost("/down", async (HttpRequest request, ClusterMembers members) =>
        {
            var body = await ApiBody.ReadAsync(request, ApiJson.Wire.ClusterMemberRequest);
            if (body.Node is null or "") throw new BadApiRequestException("node is required: the name or address of the member to mark down, e.g. {\"node\": \"c\"}");
            var member = members.Find(body.Node, m => !members.IsReachable(m));
            return Results.Json(members.Down(member), ApiJson.Wire.MemberInfo);
        }).AddEndpointFilter<RequireAdminToken>();
    }

    /// <summary>A member's whole hand-off takes at most 45 s (ReplicatedVolumes.HandOffBudget), plus the answer's way back.</summary>
    private static readonly TimeSpan HandOffTimeout = TimeSpan.FromSeconds(60);

    private static IReadOnlyList<HandOffInfo> Describe(IEnumerable<HandOff> handOffs) =>
        [.. handOffs.Select(h => new HandOffInfo { Volume = h.Volume, To = h.To, Problem = h.Problem })];
}
