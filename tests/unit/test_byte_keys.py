"""KV keys are byte strings: a key holding bytes that are not UTF-8 (a lone surrogate after the HTTP
layer's surrogateescape decoding) survives the Raft command encoding, the store, snapshots and the
server-RPC frames, and stays distinct from its neighbours."""

from __future__ import annotations

from pyconsul.agent.raft import wire as raft_wire
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.store import StateStore

FF = b"a\xff".decode("utf-8", "surrogateescape")
FE = b"a\xfe".decode("utf-8", "surrogateescape")


def test_commands_carry_undecodable_key_bytes() -> None:
    for key in (FF, FE, "café", "a\ufffd"):
        data = c.encode(c.KVSet(key, b"v", 1))
        assert c.decode(data) == c.KVSet(key, b"v", 1)
    assert b"a\xff" in c.encode(c.KVSet(FF, b"v"))  # on the wire: the client's own bytes
    assert c.encode(c.KVSet(FF, b"v")) != c.encode(c.KVSet(FE, b"v"))


def test_store_and_snapshot_keep_two_keys() -> None:
    st = StateStore()
    assert st.apply(1, c.encode(c.KVSet(FF, b"ff"))) is True
    assert st.apply(2, c.encode(c.KVSet(FE, b"fe"))) is True
    assert st.apply(3, c.encode(c.KVSet("a\ufffd", b"replacement"))) is True
    assert sorted(st.kv_keys("a")) == sorted([FF, FE, "a\ufffd"])
    entry = st.kv_get(FF)
    assert entry is not None and entry.value == b"ff"
    again = StateStore()
    assert again.apply(4, c.encode(c.Restore(st.snapshot()))) is not None
    entry = again.kv_get(FE)
    assert entry is not None and entry.value == b"fe"
    assert sorted(again.kv_keys("a")) == sorted([FF, FE, "a\ufffd"])


def test_rpc_frames_carry_byte_keys() -> None:
    framed = raft_wire.frame([1, 7, "read", {"name": "kv.get", "args": {"key": FF}}])
    body = framed[raft_wire.HEADER.size:]
    assert raft_wire.unframe(body) == [1, 7, "read", {"name": "kv.get", "args": {"key": FF}}]
