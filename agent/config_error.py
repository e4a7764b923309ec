"""`ConfigError`, shared by `agent.config` and the per-core config modules.

It lives apart from `agent.config` so that the pure cores' config modules (`agent.gossip.config`,
`agent.raft.config`) can raise it without importing the agent's config loader.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Invalid configuration; str() is one line naming the file (if any) and the key."""
