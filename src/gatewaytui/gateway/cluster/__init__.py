"""A fleet: several gateway replicas acting as one through Redis (docs/cluster.md).

Nothing in this package is imported unless `cluster.redis_url` is set, so a single-node
gateway neither loads `redis` nor pays for any of it.
"""
