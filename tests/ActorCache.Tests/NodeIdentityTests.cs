using ActorCache.Cluster;
using ActorCache.Hosting;

namespace ActorCache.Tests;

/// <summary>The node's name in its data directory: recorded once, kept across restarts, another refused.</summary>
public sealed class NodeIdentityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-identity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private NodeSettings Settings(string? nodeName = null) =>
        NodeSettingsLoader.Load(new ServeFlags(null, _dir, [], [], [], NodeName: nodeName));

    [Fact]
    public void A_first_start_takes_the_name_asked_for_or_the_host_name()
    {
        Assert.Equal("a", NodeIdentity.Resolve(Settings("a")));
        Assert.Equal(NodeIdentity.HostName(), NodeIdentity.Resolve(Settings()));
        Assert.False(File.Exists(Path.Combine(_dir, NodeIdentity.FileName)), "resolving writes nothing; the name is recorded once the start succeeded");
    }

    [Fact]
    public void A_recorded_name_is_kept_and_another_is_refused()
    {
        NodeIdentity.Record(_dir, "a");
        NodeIdentity.Record(_dir, "b"); // recorded once: a later start never rewrites it
        Assert.Equal("a\n", File.ReadAllText(Path.Combine(_dir, NodeIdentity.FileName)));
        Assert.Equal("a", NodeIdentity.Resolve(Settings()));
        Assert.Equal("a", NodeIdentity.Resolve(Settings("a")));
        var e = Assert.Throws<SettingsException>(() => NodeIdentity.Resolve(Settings("b")));
        Assert.Equal($"data directory {_dir} belongs to node 'a' ({_dir}/node.name), not 'b' as --node-name b asks; start it as 'a' " +
                     "(or without --node-name), or give the new node a data directory of its own", e.Message);
    }

    [Fact]
    public void A_damaged_name_file_is_refused_with_what_to_do()
    {
        File.WriteAllText(Path.Combine(_dir, NodeIdentity.FileName), "not a name\n");
        var e = Assert.Throws<SettingsException>(() => NodeIdentity.Resolve(Settings()));
        Assert.Contains("holds 'not a name', which is not a node name; put the node's name back in it", e.Message);
    }
}
