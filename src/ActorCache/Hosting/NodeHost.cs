using ActorCache.Volumes;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using LinqToDB;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorCache.Hosting;

/// <summary>Builds the node: generic host, one ActorSystem "actorcache" in a cluster (of one unless seeds are given), persistence, and the storage service.</summary>
public static class NodeHost
{
    public const string SystemName = "actorcache";

    public static IHost Build(NodeSettings settings)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.StopGrace + TimeSpan.FromSeconds(20));
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(new ExportCatalog(settings.DefaultExport));
        // The ring is allocated once, at start, for every volume of the node.
        builder.Services.AddSingleton(_ => new ActorCache.Cache.RingBuffer(settings.Cache.RingSize));

        builder.Services.AddAkka(SystemName, (akka, _) =>
        {
            akka.AddHocon(settings.Config, HoconAddMode.Prepend)
                .AddHocon(ActorCache.Cache.Actors.CacheDispatchers.Hocon, HoconAddMode.Append)
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
        return builder.Build();
    }
}
