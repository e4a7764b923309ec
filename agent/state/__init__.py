"""The replicated state machine of a Consul server: KV, catalog, sessions; indexes; snapshot/restore.

Pure and deterministic (no I/O, no clock): store.StateStore is the entry point; commands.py defines what
Raft entries carry; kv.py, catalog.py, catalog_reads.py and sessions.py hold the rules; tables.py the
journaled tables; snapshot.py and wire.py the encodings.
"""
