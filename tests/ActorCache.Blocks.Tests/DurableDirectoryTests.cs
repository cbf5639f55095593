namespace ActorCache.Blocks.Tests;

/// <summary><see cref="LibC.CreateDirectoryDurably"/>: the log's directory and its missing parents, each parent fsynced.</summary>
public sealed class DurableDirectoryTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("actorcache-dir-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Missing_parents_are_created_and_an_existing_directory_is_left_alone()
    {
        var path = Path.Combine(_root, "a", "b", "log");
        LibC.CreateDirectoryDurably(path);
        Assert.True(Directory.Exists(path));
        File.WriteAllText(Path.Combine(path, "kept"), "x");
        LibC.CreateDirectoryDurably(path + "/");
        Assert.True(File.Exists(Path.Combine(path, "kept")));
    }

    [Fact]
    public void A_file_in_the_way_is_an_error()
    {
        File.WriteAllText(Path.Combine(_root, "file"), "x");
        Assert.ThrowsAny<IOException>(() => LibC.CreateDirectoryDurably(Path.Combine(_root, "file", "log")));
    }
}
