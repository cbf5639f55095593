using ActorCache.Admin;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using LinqToDB;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
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

    public static IHost Build(NodeSettings settings)
    {
        // The web application builder is the generic host plus Kestrel; it starts the web server after every
        // other hosted service, so the admin listener answers once the volumes are online, and stops it first.
        // No configuration file is read from the content root, and nothing watches it: the default
        // reloads appsettings.json through a recursive watcher on the working directory, and with the
        // data directory under it (./data by default) every log write became an inotify event to handle.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        // A log storm (every request of a client failing) drops lines instead of blocking the thread that
        // logs: NBD receive loops run on the socket engine's threads and must never wait for the console.
        builder.Services.Configure<ConsoleLoggerOptions>(o => o.QueueFullMode = ConsoleLoggerQueueFullMode.DropWrite);
        // ASP.NET Core logs every request at Information; a scrape every few seconds would drown the node's own log.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(settings.Admin.EndPoint, l => l.Protocols = HttpProtocols.Http1));
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.StopGrace + TimeSpan.FromSeconds(20));
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(new ExportCatalog(settings.DefaultExport));
        // The ring is allocated once, at start, for every volume of the node.
        builder.Services.AddSingleton(_ => new ActorCache.Cache.RingBuffer(settings.Cache.RingSize));

        builder.Services.AddAkka(SystemName, (akka, _) =>
        {
            akka.AddHocon(settings.Config, HoconAddMode.Prepend)
                .AddHocon(ActorCache.Cache.Actors.CacheDispatchers.Hocon, HoconAddMode.Append)
                // The host runs the shutdown: NBD front first, then the volumes (flushed, closed), then
                // the actor system. Akka's own SIGTERM hook would stop the volume actors under the
                // front while requests are still in flight.
                .AddHocon("akka.coordinated-shutdown.run-by-clr-shutdown-hook = off", HoconAddMode.Prepend)
                .ConfigureLoggers(loggers =>
                {
                    loggers.ClearLoggers();
                    loggers.AddLoggerFactory();
                })
                .WithRemoting(settings.ClusterHostname, settings.ClusterPort)
                .WithClustering(new ClusterOptions { SeedNodes = [.. settings.SeedNodes], Roles = ["storage"] })
                .WithSqlPersistence(
                    connectionString: settings.MetadataConnectionString,
                    providerName: settings.Metadata == MetadataProvider.Sqlite ? ProviderName.SQLiteMS : ProviderName.PostgreSQL15,
                    autoInitialize: true)
                .WithActors((system, registry) =>
                {
                    registry.Register<VolumeRegistry>(system.ActorOf(Props.Create(() => new VolumeRegistry()), VolumeRegistry.Id));
                })
                .AddStartup((system, _) =>
                {
                    // A node with no seeds is a cluster of one: it joins itself, so sharding and
                    // singletons behave the same as on many nodes.
                    if (settings.SeedNodes.Count == 0)
                    {
                        var cluster = Cluster.Get(system);
                        cluster.Join(cluster.SelfAddress);
                    }
                });
        });
        builder.Services.AddSingleton<NodeService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<NodeService>());
        builder.Services.AddSingleton<VolumeStatusReader>();
        builder.Services.AddSingleton<NodeMetrics>();
        builder.Services.AddHostedService<AdminUrlFile>();

        var app = builder.Build();
        AdminEndpoints.Map(app);
        return app;
    }

    /// <summary>What to tell the user when the node fails to start.</summary>
    public static string DescribeStartFailure(Exception e, NodeSettings settings) => e switch
    {
        SettingsException => e.Message,
        // Kestrel's own message names the URL but not the setting to change.
        IOException { InnerException: AddressInUseException } =>
            $"cannot listen on admin address {settings.Admin.Text}: address already in use; choose another with --admin HOST:PORT " +
            "or actorcache.admin.listen (port 0 picks a free port)",
        _ => $"{e.GetType().Name}: {e.Message}",
    };
}
