"""pyconsul: a Consul-compatible agent in Python asyncio."""

__version__ = "0.1.0"
