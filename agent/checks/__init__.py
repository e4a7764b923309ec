"""Health checks of the local agent: definitions (spec.py), the pure scheduler core and its asyncio shell."""
