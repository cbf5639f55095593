using ActorCache.Admin;
using ActorCache.Nbd;
using ActorCache.Volumes;

namespace ActorCache.Hosting;

/// <summary>The listeners a start binds before anything else: NBD and admin, all or none.</summary>
public sealed class NodeListeners(NbdListeners nbd, AdminListener admin) : IDisposable
{
    public NbdListeners Nbd { get; } = nbd;
    public AdminListener Admin { get; } = admin;

    public void Dispose()
    {
        Nbd.Dispose();
        Admin.CloseUnused();
    }
}

/// <summary>
/// What a start checks before the node creates any file (metadata, backing, log): the addresses it
/// must serve on are free (they are bound here and kept), and every backing named on the command line
/// or in the configuration can be used. Checks that need the metadata (volumes that exist already, the
/// log's free space for all of them) follow in <see cref="NodeService"/>, still before any volume file.
/// </summary>
public static class StartChecks
{
    public static NodeListeners BindListeners(NodeSettings settings)
    {
        NbdListeners nbd;
        try
        {
            nbd = NbdListeners.Bind(settings.Nbd.Listen);
        }
        catch (InvalidOperationException e)
        {
            throw new SettingsException($"{e.Message}; choose another with --listen");
        }
        AdminListener admin;
        try
        {
            admin = AdminListener.Bind(settings.Admin);
        }
        catch (InvalidOperationException e)
        {
            nbd.Dispose();
            throw new SettingsException($"{e.Message}; choose another with --admin HOST:PORT or actorcache.admin.listen (port 0 picks a free port)");
        }
        var listeners = new NodeListeners(nbd, admin);
        try
        {
            CheckClusterAddress(settings);
        }
        catch
        {
            listeners.Dispose();
            throw;
        }
        return listeners;
    }

    /// <summary>
    /// Akka remoting binds its port when the actor system starts, deep in the start; a port taken already
    /// is found here first, in the same words as the NBD and admin addresses (a probe bind, released at once).
    /// </summary>
    public static void CheckClusterAddress(NodeSettings settings)
    {
        var text = $"{settings.ClusterHostname}:{settings.ClusterPort}";
        var flag = settings.ClusterOrigin.StartsWith("--", StringComparison.Ordinal) ? "--cluster" : "--cluster HOST:PORT or actorcache.cluster.hostname/port";
        if (!NbdListenAddress.TryResolveHost(settings.ClusterHostname.Trim('[', ']'), text, out var ip, out var error))
            throw new SettingsException($"cluster address: {error}; choose another with {flag}");
        if (settings.ClusterPort == 0) return;
        try
        {
            using var probe = ListenSocket.Open(new System.Net.IPEndPoint(ip, settings.ClusterPort), $"cluster address {text}", backlog: 1);
        }
        catch (InvalidOperationException e)
        {
            throw new SettingsException($"{e.Message}; choose another with {(flag == "--cluster" ? "--cluster HOST:PORT" : flag)} (port 0 picks a free port)");
        }
    }

    /// <summary>Refuses backing paths that cannot work: a directory, a missing directory, a file this node may not open.</summary>
    public static void CheckBackings(NodeSettings settings)
    {
        var volumesDir = Path.Combine(settings.DataDir, "volumes");
        if (File.Exists(volumesDir)) throw new SettingsException($"{volumesDir} is a file; the node keeps default backing files in that directory");
        foreach (var spec in settings.Volumes)
        {
            if (spec.BackingPath is null) continue;
            CheckBacking(spec, Path.GetFullPath(spec.BackingPath));
        }
    }

    public static void CheckBacking(VolumeSpec spec, string path)
    {
        if (Directory.Exists(path)) throw new SettingsException($"volume {spec.Name}: backing {path} is a directory; give a file or a block device");
        if (!File.Exists(path))
        {
            if (!Directory.Exists(Path.GetDirectoryName(path)))
                throw new SettingsException($"volume {spec.Name}: the directory of backing {path} does not exist");
            return;
        }
        try
        {
            using var _ = File.OpenHandle(path, FileMode.Open, spec.ReadOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SettingsException($"volume {spec.Name}: cannot open backing {path}{(spec.ReadOnly ? "" : " for writing")}: {e.Message}");
        }
    }
}
