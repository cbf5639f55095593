using Microsoft.Win32.SafeHandles;

namespace ActorCache.Hosting;

/// <summary>
/// Makes a data directory one node's: an exclusive lock (flock) on DATA_DIR/node.lock held while the
/// node runs, so two nodes never share metadata or backing files, and the node's pid in
/// DATA_DIR/node.pid for the message another node prints. The kernel drops the lock if the node dies.
/// </summary>
public sealed class DataDirectoryLock : IDisposable
{
    private readonly SafeFileHandle _lock;
    private readonly string _dataDir;
    private readonly bool _createdDirectory;

    private DataDirectoryLock(SafeFileHandle @lock, string dataDir, bool createdDirectory)
    {
        _lock = @lock;
        _dataDir = dataDir;
        _createdDirectory = createdDirectory;
    }

    private string PidPath => Path.Combine(_dataDir, "node.pid");

    public static DataDirectoryLock Acquire(string dataDir)
    {
        var created = !Directory.Exists(dataDir);
        if (File.Exists(dataDir)) throw new SettingsException($"data directory {dataDir} is a file, not a directory; give --data-dir a directory");
        try
        {
            Directory.CreateDirectory(dataDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SettingsException($"cannot create data directory {dataDir}: {e.Message}");
        }
        var path = Path.Combine(dataDir, "node.lock");
        var (handle, errno) = NodeLibC.OpenOrCreate(path);
        if (handle is null)
        {
            throw new SettingsException(errno switch
            {
                NodeLibC.EROFS => $"data directory {dataDir} is on a read-only file system; the node must write there (give --data-dir a writable directory)",
                NodeLibC.EACCES => $"data directory {dataDir} is not writable for this user; fix its permissions or give --data-dir another directory",
                _ => $"cannot open {path}: {NodeLibC.Describe(errno)}",
            });
        }
        var lockErrno = NodeLibC.TryLockExclusive(handle);
        if (lockErrno != 0)
        {
            handle.Dispose();
            if (lockErrno != NodeLibC.EWOULDBLOCK) throw new SettingsException($"cannot lock {path}: {NodeLibC.Describe(lockErrno)}");
            var pid = ReadPid(dataDir);
            throw new SettingsException(
                $"data directory {dataDir} is in use by another running node{(pid is null ? "" : $" (pid {pid})")}; " +
                "stop that node or give this one its own --data-dir");
        }
        var result = new DataDirectoryLock(handle, dataDir, created);
        try
        {
            File.WriteAllText(result.PidPath, Environment.ProcessId + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            result.Dispose();
            throw new SettingsException($"cannot write to data directory {dataDir}: {e.Message}");
        }
        return result;
    }

    private static string? ReadPid(string dataDir)
    {
        try { return File.ReadAllText(Path.Combine(dataDir, "node.pid")).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// After a start that failed: removes what taking the directory created (node.pid, and node.lock with
    /// the directory itself when this start created it), so a failed start leaves nothing behind but,
    /// when <paramref name="keepDebugLog"/>, the debug log that explains it.
    /// </summary>
    public void Abandon(bool keepDebugLog)
    {
        TryDelete(PidPath);
        if (!_createdDirectory) return;
        TryDelete(Path.Combine(_dataDir, "node.lock"));
        if (!keepDebugLog) TryDelete(Path.Combine(_dataDir, Logging.DebugLogFile.FileName));
        try
        {
            if (!Directory.EnumerateFileSystemEntries(_dataDir).Any()) Directory.Delete(_dataDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Releases the lock; node.pid goes with it (node.lock stays: removing a lock file races with the next node taking it).</summary>
    public void Dispose()
    {
        TryDelete(PidPath);
        _lock.Dispose();
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
