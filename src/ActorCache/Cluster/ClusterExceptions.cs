namespace ActorCache.Cluster;

/// <summary>No member of the cluster goes by that name or address: 404.</summary>
public sealed class ClusterMemberNotFoundException(string message) : Exception(message);

/// <summary>A cluster change the member's state does not allow (downing a reachable member, an ambiguous name): 409.</summary>
public sealed class ClusterChangeRefusedException(string message) : Exception(message);
