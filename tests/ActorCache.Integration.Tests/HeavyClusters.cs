namespace ActorCache.Integration.Tests;

/// <summary>
/// The test classes that run a three-node cluster under sustained load (writers, SIGKILLs, SIGSTOPs): one at a time, not beside
/// each other (each may still run beside a lighter class).
/// </summary>
public static class HeavyClusters
{
    public const string Name = "heavy three-node clusters";
}
