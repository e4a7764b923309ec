"""The local agent's own services and checks (Consul's agent/local and agent/ae).

definitions.py  service definitions: parsing, validation, JSON shapes (pure)
state.py        LocalState: services, checks, maintenance, sync flags, anti-entropy decisions (pure)
ae.py           anti-entropy timing: aeScale, stagger, retry (pure)
persist.py      data_dir/services and data_dir/checks (atomic files, written off the event loop)
sync.py         AntiEntropy: the asyncio loop that writes the differences to the catalog
manager.py      LocalAgent: what the HTTP layer and the agent use; the check runners' CheckSink
"""
