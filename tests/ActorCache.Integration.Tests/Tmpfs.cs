namespace ActorCache.Integration.Tests;

/// <summary>A small tmpfs mounted for one test (the tests run as root), unmounted on dispose: a full or read-only file system on demand.</summary>
public sealed class Tmpfs : IAsyncDisposable
{
    private Tmpfs(string path) => Path = path;

    public string Path { get; }

    public static async Task<Tmpfs> MountAsync(string size)
    {
        var path = Directory.CreateTempSubdirectory("actorcache-tmpfs-").FullName;
        await Tool.CheckAsync("mount", "-t", "tmpfs", "-o", $"size={size}", "tmpfs", path);
        return new Tmpfs(path);
    }

    public Task RemountReadOnlyAsync() => Tool.CheckAsync("mount", "-o", "remount,ro", Path);

    /// <summary>Fills the file system to the last byte with a file nobody needs.</summary>
    public Task FillAsync() => Tool.RunAsync("dd", ["if=/dev/zero", $"of={System.IO.Path.Combine(Path, "filler")}", "bs=1M"]);

    public async ValueTask DisposeAsync()
    {
        await Tool.RunAsync("umount", ["-l", Path]);
        Directory.Delete(Path, recursive: true);
    }
}
