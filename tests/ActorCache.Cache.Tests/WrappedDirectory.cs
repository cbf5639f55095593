namespace ActorCache.Cache.Tests;

/// <summary>A log directory that passes everything to a real one; tests override the call they want to disturb or count.</summary>
internal abstract class WrappedDirectory(ILogDirectory inner) : ILogDirectory
{
    public string Path => inner.Path;
    public bool Exists(string name) => inner.Exists(name);
    public virtual IDurableFile Open(string name, FileMode mode) => inner.Open(name, mode);
    public void Delete(string name) => inner.Delete(name);
    public virtual void Replace(string source, string destination) => inner.Replace(source, destination);
}
