using ActorCache.Admin;
using ActorCache.Hosting.Logging;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using LinqToDB;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace ActorCache.Hosting;

/// <summary>
/// Builds the node: the host, one ActorSystem "actorcache" in a cluster (of one unless seeds are given),
/// persistence, the storage service, and the admin HTTP listener (Kestrel).
/// </summary>
public static class NodeHost
{
    public const string SystemName = "actorcache";

    /// <summary>
    /// <paramref name="listeners"/> are the sockets the start bound already (the host serves on them);
    /// <paramref name="debugLog"/> receives every line at Debug and above with exception traces.
    /// </summary>
    public static IHost Build(NodeSettings settings, NodeListeners listeners, DebugLogFile debugLog)
    {
        // The web application builder is the generic host plus Kestrel; it starts the web server after every
        // other hosted service, so the admin listener answers once NBD is served and every volume is started (and
        // maybe still opening: /health says how far), and stops it first.
        // No configuration file is read from the content root, and nothing watches it: the default
        // reloads appsettings.json through a recursive watcher on the working directory, and with the
        // data directory under it (./data by default) every log write became an inotify event to handle.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Debug); // for the debug log; the console shows Information and above
        builder.Logging.AddConsole(o => o.FormatterName = NodeConsoleFormatter.Name);
        builder.Logging.AddConsoleFormatter<NodeConsoleFormatter, ConsoleFormatterOptions>();
        builder.Logging.AddFilter<ConsoleLoggerProvider>(null, LogLevel.Information);
        // A failed start is reported by the node in one line; the host's own report (with the trace) goes to the debug log only.
        builder.Logging.AddFilter<ConsoleLoggerProvider>("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        // "Application started. Press Ctrl+C", the content root and the environment say nothing about the node.
        builder.Logging.AddFilter<ConsoleLoggerProvider>("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        builder.Logging.AddProvider(debugLog);
        // A log storm (every request of a client failing) drops lines instead of blocking the thread that
        // logs: NBD receive loops run on the socket engine's threads and must never wait for the console.
        builder.Services.Configure<ConsoleLoggerOptions>(o => o.QueueFullMode = ConsoleLoggerQueueFullMode.DropWrite);
        // ASP.NET Core logs every request at Information; a scrape every few seconds would drown the node's own log.
        builder.Logging.AddFilter<ConsoleLoggerProvider>("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter<DebugLogFile>("Microsoft.AspNetCore", LogLevel.Warning);
        // Cluster bootstrap logs every lookup and probe (each second while it looks) at Information: the console gets its
        // warnings, the debug log everything. Why a node is not in a cluster is in /health and the join watch's warning.
        builder.Logging.AddFilter<ConsoleLoggerProvider>("Akka.Management.Cluster.Bootstrap.Internal", LogLevel.Warning);
        // The admin socket was bound before anything was created; Kestrel serves on it.
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenHandle(listeners.Admin.Handle, l => l.Protocols = HttpProtocols.Http1));
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.StopGrace + TimeSpan.FromSeconds(20));
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(listeners);
        var snapshots = new ActorCache.Snapshots.SnapshotCatalog();
        builder.Services.AddSingleton(snapshots);
        builder.Services.AddSingleton(new ExportCatalog(settings.DefaultExport, snapshots));
        // The ring is allocated once, at start, for every volume of the node.
        builder.Services.AddSingleton(_ => new ActorCache.Cache.RingBuffer(settings.Cache.RingSize));

        builder.Services.AddAkka(SystemName, (akka, services) =>
        {
            AkkaStartStopLogger.Loggers = services.GetRequiredService<ILoggerFactory>();
            akka.AddHocon(settings.Config, HoconAddMode.Prepend)
                // The host runs the shutdown: NBD front first, then the volumes (flushed, closed), then
                // the actor system. Akka's own SIGTERM hook would stop the volume actors under the
                // front while requests are still in flight.
                .AddHocon("akka.coordinated-shutdown.run-by-clr-shutdown-hook = off", HoconAddMode.Prepend)
                // A node that leaves the cluster stops its storage in this phase first (ClusterStopBridge).
                .AddHocon($"akka.coordinated-shutdown.phases.before-service-unbind.timeout = {(long)ActorCache.Cluster.ClusterStopBridge.PhaseTimeout(settings).TotalMilliseconds}ms",
                    HoconAddMode.Prepend)
                // Akka logs through the host's loggers, once (AkkaLogBridge), and so does the minimal logger it
                // falls back to while its loggers start and after they stop (Akka's own prints its own format
                // to stdout). The dead letters of a stopping node are expected, not news.
                .AddHocon($"akka.stdout-logger-class = \"{typeof(AkkaStartStopLogger).AssemblyQualifiedName}\"\nakka.log-dead-letters-during-shutdown = off",
                    HoconAddMode.Prepend)
                .AddSetup(new AkkaLogBridgeSetup(services.GetRequiredService<ILoggerFactory>(), joinsItself: settings.SeedNodes.Count == 0 && settings.Discovery == ClusterDiscovery.Seeds))
                .ConfigureLoggers(loggers =>
                {
                    loggers.ClearLoggers();
                    loggers.AddLogger<AkkaLogBridge>();
                })
                .WithRemoting(settings.ClusterHostname.Trim('[', ']'), settings.ClusterPort)
                .WithClustering(new ClusterOptions { SeedNodes = [.. settings.SeedNodes] })
                // The node's name travels as a role, so every member can list the others by name (quoted:
                // the hosting options write roles unquoted, and the name role has a colon).
                .AddHocon($"akka.cluster.roles = [\"storage\", \"{ActorCache.Cluster.ClusterMembers.NameRolePrefix}{settings.NodeName}\"]", HoconAddMode.Prepend)
                .AddHocon(settings.Discovery == ClusterDiscovery.Seeds ? "" : ActorCache.Cluster.ClusterBootstrapConfig.Hocon(settings), HoconAddMode.Prepend)
                .AddSetup(new ActorCache.Cluster.DiscoveryReportSetup(services.GetRequiredService<ActorCache.Cluster.DiscoveryReport>()))
                .WithSqlPersistence(
                    connectionString: settings.MetadataConnectionString,
                    providerName: settings.Metadata == MetadataProvider.Sqlite ? ProviderName.SQLiteMS : ProviderName.PostgreSQL15,
                    autoInitialize: true)
                .WithActors((system, registry) =>
                {
                    registry.Register<VolumeRegistry>(system.ActorOf(Props.Create(() => new VolumeRegistry()), VolumeRegistry.Id));
                    registry.Register<ActorCache.Snapshots.SnapshotRegistry>(
                        system.ActorOf(Props.Create(() => new ActorCache.Snapshots.SnapshotRegistry()), ActorCache.Snapshots.SnapshotRegistry.Id));
                    system.ActorOf(ActorCache.Replicas.ReplicaManagerActor.Props(() => services.GetRequiredService<ActorCache.Replicas.ReplicatedVolumes>(),
                        settings.NodeName), ActorCache.Replicas.ReplicaManagerActor.Name);
                    // One entity per (volume, node), each on its node: the replicas' control endpoints (ReplicaShards).
                    ActorCache.Replicas.ReplicaShards.Start(system, () => services.GetRequiredService<ActorCache.Replicas.ReplicatedVolumes>(), settings.NodeName);
                    system.ActorOf(ActorCache.Cluster.ClusterNodeActor.Props(settings.NodeName,
                        () => services.GetRequiredService<NodeVolumes>().Running.Select(v => v.Name),
                        () => services.GetRequiredService<ActorCache.Cluster.ClusterOrigin>().UpSince), ActorCache.Cluster.ClusterNodeActor.Name);
                })
                .AddStartup((system, _) =>
                {
                    // With discovery, bootstrap joins or forms the cluster (ClusterBootstrapStart).
                    if (settings.Discovery != ClusterDiscovery.Seeds) return;
                    // A node with no seeds is a cluster of one: it joins itself, so sharding and
                    // singletons behave the same as on many nodes.
                    if (settings.SeedNodes.Count == 0)
                    {
                        var cluster = Akka.Cluster.Cluster.Get(system);
                        cluster.Join(cluster.SelfAddress);
                    }
                });
        });
        // Stopped right after the storage service (hosted services stop in reverse order); see ClusterStopBridge.
        builder.Services.AddSingleton<ActorCache.Cluster.JoinGiveUp>();
        builder.Services.AddHostedService<ActorCache.Cluster.ClusterStopBridge>();
        builder.Services.AddSingleton<ActorCache.Cluster.ClusterMembers>();
        builder.Services.AddSingleton<ActorCache.Cluster.ShardingView>();
        builder.Services.AddSingleton<ActorCache.Snapshots.SnapshotService>();
        builder.Services.AddSingleton<ActorCache.Snapshots.VolumeRevert>();
        builder.Services.AddSingleton<ActorCache.Snapshots.SnapshotClones>();
        builder.Services.AddSingleton<ActorCache.Snapshots.CloneCreation>();
        builder.Services.AddSingleton<NodeVolumes>();
        builder.Services.AddSingleton<ActorCache.Replicas.PeerEndpoints>();
        builder.Services.AddSingleton<ActorCache.Replicas.ReplicaRoles>();
        builder.Services.AddSingleton<IVolumeObserver>(s => s.GetRequiredService<ActorCache.Replicas.ReplicaRoles>());
        builder.Services.AddSingleton<ActorCache.Replicas.ReplicatedVolumes>();
        builder.Services.AddSingleton<VolumeCreation>();
        builder.Services.AddSingleton<VolumeDeletion>();
        builder.Services.AddSingleton<VolumeDependents>();
        builder.Services.AddSingleton<NodeService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<NodeService>());
        builder.Services.AddHostedService<ActorCache.Replicas.ReplicaReconciler>();
        // Records the node's name once it serves, and reports a node its seeds do not let in.
        builder.Services.AddSingleton<ActorCache.Cluster.DiscoveryReport>();
        builder.Services.AddSingleton<ActorCache.Cluster.ClusterJoinWatch>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ActorCache.Cluster.ClusterJoinWatch>());
        builder.Services.AddSingleton<ActorCache.Cluster.DuplicateNameGuard>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ActorCache.Cluster.DuplicateNameGuard>());
        builder.Services.AddSingleton<ActorCache.Cluster.ClusterOrigin>();
        builder.Services.AddSingleton<ActorCache.Cluster.SeparateClusterGuard>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ActorCache.Cluster.SeparateClusterGuard>());
        if (settings.Discovery != ClusterDiscovery.Seeds) builder.Services.AddHostedService<ActorCache.Cluster.ClusterBootstrapStart>();
        builder.Services.AddSingleton<VolumeStatusReader>();
        builder.Services.AddSingleton<NodeMetrics>();
        builder.Services.AddSingleton<ActorTree>();
        builder.Services.AddSingleton<VolumeInfoReader>();
        builder.Services.AddSingleton<AdminOperations>();
        builder.Services.AddSingleton<VolumeModeSwitch>();
        builder.Services.AddSingleton<ApiErrors>();
        builder.Services.AddSingleton<RequireAdminToken>();
        // The token is written before admin.url (hosted services start in the order they are added).
        builder.Services.AddSingleton<AdminToken>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<AdminToken>());
        builder.Services.AddHostedService<AdminUrlFile>();

        var app = builder.Build();
        AdminEndpoints.Map(app);
        return app;
    }
}
