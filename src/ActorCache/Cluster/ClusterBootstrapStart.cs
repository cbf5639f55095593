using System.Collections.Immutable;
using System.Net;
using System.Reflection;
using ActorCache.Hosting;
using Akka.Actor;
using Akka.Cluster;
using Akka.Management.Cluster.Bootstrap;
using Akka.Management.Cluster.Bootstrap.ContactPoint;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Newtonsoft.Json;
using Protocol = Akka.Management.Cluster.Bootstrap.ContactPoint.HttpBootstrapJsonProtocol;

namespace ActorCache.Cluster;

/// <summary>
/// The management endpoint of a node with kubernetes or config discovery, and the start of cluster bootstrap over it.
/// Other nodes' bootstrap probes <c>GET /bootstrap/seed-nodes</c> here. It is served by a Kestrel of its own (only
/// that route: the admin API stays on the admin listener) rather than by Akka.Management's HTTP server, whose
/// Ceen.Httpd 0.9.9 the registry lacks (0.9.10 changed the method it calls, so AkkaManagement.Start fails). The
/// answer is Akka.Management's own JSON type, serialized as its probing side reads it. Bootstrap then keeps
/// looking up contact points and probing them until it has found a cluster to join (then Akka's join to its seeds takes
/// over, and stops the node if akka.cluster.shutdown-after-unsuccessful-join-seed-nodes is set and that join never
/// succeeds: see <see cref="JoinGiveUp"/>) or forms one; it never stops the node itself.
/// </summary>
public sealed class ClusterBootstrapStart(NodeSettings settings, ActorSystem system, ILogger<ClusterBootstrapStart> logger) : IHostedService
{
    private WebApplication? _endpoint;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var management = settings.Management ?? new ClusterAddress(settings.ClusterHostname, ClusterBootstrapConfig.DefaultManagementPort);
        var bootstrap = ClusterBootstrap.Get(system);
        try
        {
            _endpoint = BuildEndpoint(management);
            await _endpoint.StartAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            // The node still serves its volumes; /health says it is not in a cluster.
            logger.LogError("cluster bootstrap: cannot serve the management endpoint on {Address}: {Message}; this node stays out of the cluster " +
                            "until restarted with a free --management address", management, e.Message);
            _endpoint = null;
            return;
        }
        // What bootstrap advertises and compares the contact points with (which of them is this node).
        var self = new Uri($"http://{(management.Host.Contains(':') && !management.Host.StartsWith('[') ? $"[{management.Host}]" : management.Host)}:{management.Port}/");
        SetSelfContactPoint(bootstrap, self);
        logger.LogInformation("cluster bootstrap: management endpoint at {Uri}; looking for the cluster through {Where}", self, ClusterBootstrapConfig.Describe(settings));
        _ = StartBootstrapAsync(bootstrap);
    }

    private async Task StartBootstrapAsync(ClusterBootstrap bootstrap)
    {
        try
        {
            await bootstrap.Start();
        }
        catch (Exception e)
        {
            logger.LogError(e, "cluster bootstrap did not start: {Message}; this node stays out of the cluster", e.Message);
        }
    }

    /// <summary>
    /// Akka.Management sets the self contact point when its own HTTP server binds; with the route served here it is set the
    /// same way (the method is internal). The cluster formation test fails if a new Akka.Management renames it.
    /// </summary>
    private static void SetSelfContactPoint(ClusterBootstrap bootstrap, Uri self)
    {
        var method = typeof(ClusterBootstrap).GetMethod("SetSelfContactPoint", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public, [typeof(Uri)])
                     ?? throw new InvalidOperationException("Akka.Management's ClusterBootstrap has no SetSelfContactPoint(Uri); this ActorCache does not support that version");
        method.Invoke(bootstrap, [self]);
    }

    private WebApplication BuildEndpoint(ClusterAddress management)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        var host = management.Host.Trim('[', ']');
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            if (IPAddress.TryParse(host, out var ip)) kestrel.Listen(ip, management.Port, l => l.Protocols = HttpProtocols.Http1);
            else if (host == "localhost") kestrel.ListenLocalhost(management.Port, l => l.Protocols = HttpProtocols.Http1);
            else kestrel.ListenAnyIP(management.Port, l => l.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        app.MapGet("/bootstrap/seed-nodes", () => Results.Content(SeedNodesJson(), "application/json"));
        return app;
    }

    /// <summary>What Akka.Management's route answers: this node, and the members a joining node may take as seeds.</summary>
    private string SeedNodesJson()
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var self = cluster.SelfMember;
        if (self.Status is MemberStatus.Down or MemberStatus.Exiting or MemberStatus.Leaving or MemberStatus.Removed)
            return JsonConvert.SerializeObject(new Protocol.SeedNodes(self.UniqueAddress.Address, ImmutableList<Protocol.ClusterMember>.Empty));
        var state = cluster.State;
        var members = state.Members
            .Where(m => !state.Unreachable.Contains(m))
            .Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining)
            .Select(m => new Protocol.ClusterMember(m.UniqueAddress.Address, m.UniqueAddress.Uid, m.Status, m.Roles))
            .ToImmutableList();
        return JsonConvert.SerializeObject(new Protocol.SeedNodes(self.UniqueAddress.Address, members));
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_endpoint is null) return;
        await _endpoint.StopAsync(cancellationToken);
        await _endpoint.DisposeAsync();
    }
}
