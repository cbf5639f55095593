using System.Text.Json;

namespace ActorCache.Integration.Tests;

/// <summary>
/// <c>actorcache actors</c> and <c>actorcache top</c> against a real node: the actor hierarchy as Akka holds it,
/// and live rates from two scrapes of <c>/metrics</c> while a real NBD client writes.
/// </summary>
public sealed class InspectCommandTests : IDisposable
{
    private readonly string _dataDir = NodeProcess.NewDataDir();

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    private static IEnumerable<JsonElement> Descendants(JsonElement actor) =>
        new[] { actor }.Concat(actor.GetProperty("children").EnumerateArray().SelectMany(Descendants));

    [Fact]
    public async Task Actors_lists_each_volume_with_its_flusher_and_destager_and_their_mailboxes()
    {
        await using var node = await NodeProcess.StartAsync(_dataDir, "--volume", "vol0:64M:write-back", "--volume", "vol1:64M:write-back");

        var roots = await Cli.JsonAsync(node, "actors");
        var user = Assert.Single(roots.EnumerateArray());
        Assert.Equal("/user", user.GetProperty("path").GetString());
        var all = Descendants(user).ToList();
        foreach (var volume in new[] { "vol0", "vol1" })
        {
            var volumeActor = Assert.Single(all, a => a.GetProperty("path").GetString() == $"/user/volume-{volume}");
            Assert.Equal("ActorCache.Volumes.VolumeActor", volumeActor.GetProperty("type").GetString());
            var children = volumeActor.GetProperty("children").EnumerateArray().ToList();
            Assert.Equal(children.Count, volumeActor.GetProperty("childCount").GetInt32());
            foreach (var (role, type) in new[] { ("flusher", "ActorCache.Cache.FlusherActor"), ("destager", "ActorCache.Cache.DestagerActor") })
            {
                var actor = Assert.Single(children, c => c.GetProperty("path").GetString()!.StartsWith($"/user/volume-{volume}/{role}-{volume}-"));
                Assert.EndsWith(type[(type.LastIndexOf('.') + 1)..], actor.GetProperty("type").GetString());
                Assert.Equal(JsonValueKind.Number, actor.GetProperty("mailbox").ValueKind);
                Assert.True(actor.GetProperty("mailbox").GetInt32() >= 0);
            }
        }
        Assert.Contains(all, a => a.GetProperty("path").GetString() == "/user/cluster-node");
        // Every actor under /user is a started local actor, so each has a mailbox to count.
        Assert.All(all, a => Assert.Equal(JsonValueKind.Number, a.GetProperty("mailbox").ValueKind));

        // --depth 1: the top-level actors only, each still saying how many children it has; --system adds Akka's own.
        var shallow = await Cli.JsonAsync(node, "actors", "--depth", "1", "--system");
        Assert.Equal(["/user", "/system"], shallow.EnumerateArray().Select(r => r.GetProperty("path").GetString()));
        var vol0 = Assert.Single(shallow[0].GetProperty("children").EnumerateArray(), a => a.GetProperty("path").GetString() == "/user/volume-vol0");
        Assert.Equal(0, vol0.GetProperty("children").GetArrayLength());
        Assert.Equal(2, vol0.GetProperty("childCount").GetInt32());
        Assert.Contains(shallow[1].GetProperty("children").EnumerateArray(), a => a.GetProperty("path").GetString() == "/system/cluster");

        var tree = await Cli.CheckAsync(node, "actors");
        Assert.Contains("volume-vol0", tree);
        Assert.Contains("FlusherActor", tree);
        Assert.Contains("mailbox 0", tree);

        Assert.Contains("--depth", await Cli.RefusedAsync(2, Cli.RunAsync(node, "actors", "--depth", "0")));
    }
}
