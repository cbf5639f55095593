namespace ActorCache.Hosting;

/// <summary>
/// Makes a data directory one node's: an exclusive lock (flock) on DATA_DIR/node.lock held while the
/// node runs, so two nodes never share metadata or backing files. The kernel drops it if the node dies.
/// </summary>
public sealed class DataDirectoryLock : IDisposable
{
    private readonly FileStream _lock;

    private DataDirectoryLock(FileStream @lock) => _lock = @lock;

    public static DataDirectoryLock Acquire(string dataDir)
    {
        try
        {
            Directory.CreateDirectory(dataDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SettingsException($"cannot create data directory {dataDir}: {e.Message}");
        }
        var path = Path.Combine(dataDir, "node.lock");
        FileStream stream;
        try
        {
            // FileShare.None makes .NET take flock(LOCK_EX | LOCK_NB) on Unix.
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            var pid = ReadPid(dataDir);
            throw new SettingsException(
                $"data directory {dataDir} is in use by another running node{(pid is null ? "" : $" (pid {pid})")}; " +
                "stop that node or give this one its own --data-dir");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new SettingsException($"cannot lock data directory {dataDir}: {e.Message}");
        }
        File.WriteAllText(Path.Combine(dataDir, "node.pid"), Environment.ProcessId.ToString());
        return new DataDirectoryLock(stream);
    }

    private static string? ReadPid(string dataDir)
    {
        try { return File.ReadAllText(Path.Combine(dataDir, "node.pid")).Trim(); }
        catch (IOException) { return null; }
    }

    public void Dispose() => _lock.Dispose();
}
