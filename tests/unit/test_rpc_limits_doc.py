"""The server RPC limits documented in README (Limits) are the code's; `limits.rpc_max_conns_per_client` is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyconsul.agent.config import AgentConfig, ConfigError, from_flat, parse_config_object
from pyconsul.agent.raft import transport, wire
from pyconsul.agent.raft.transport import RpcLimits, TransportStats


def _rows() -> dict[str, str]:
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| Server RPC")}


def _size(n: int) -> str:
    return f"{n // 1024 // 1024} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def test_readme_server_rpc_limits_match_the_code() -> None:
    lim = RpcLimits()
    rows = _rows()
    assert rows["Server RPC (port 8300) connections"] == (
        f"{lim.max_conns_per_client} per source IP (`limits.rpc_max_conns_per_client`, 0 = none), "
        f"{lim.max_conns} in total")
    assert rows["Server RPC: HELLO / frame body (a streamed request: all its pieces) / idle without Raft traffic"] == (
        f"{lim.hello_timeout:g} s / {lim.body_timeout:g} s + 1 s per MiB / {lim.idle_timeout:g} s")
    assert rows["Server RPC frames: HELLO, votes, acks, TimeoutNow / forwarded request / forwarded write "
                "(`apply`, a restore) / AppendEntries / InstallSnapshot"] == " / ".join(
        _size(n) for n in (wire.MAX_SMALL_FRAME, wire.MAX_REQUEST_FRAME, wire.MAX_WRITE_REQUEST_FRAME,
                           wire.MAX_FRAME, wire.MAX_SNAPSHOT_FRAME))
    assert rows[f"Server RPC: bodies of frames over {_size(transport.UNBUDGETED)} being read, all connections"] \
        == _size(lim.frame_budget)
    assert rows["Server RPC: forwarded requests in flight"] == (
        f"{lim.max_inflight_per_conn} per connection, {lim.max_inflight} and {_size(lim.max_inflight_bytes)} "
        f"in total")
    assert rows["Server RPC replies not yet taken by the client"] == (
        f"{_size(lim.max_unsent_reply_bytes)} per connection (or one reply), {_size(lim.max_unsent_reply_bytes_total)} "
        f"in total; each taken within {lim.reply_drain_timeout:g} s")
    assert rows["Server RPC: a reply or a forwarded write over 64 MiB (a consistent read or `GET /v1/snapshot` "
                "through a client agent or a follower; a restore forwarded to the leader)"] == (
        f"streamed in {_size(wire.STREAM_PIECE)} pieces, {wire.MAX_STREAM // 1024 ** 3} GiB in all")
    assert wire.MAX_FRAME == 64 << 20
    assert rows["Server RPC: streamed requests being received or served, all connections (only forwarded writes "
                "may stream)"] == f"{lim.max_stream_bytes // 1024 ** 3} GiB"
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    for name in vars(TransportStats()):
        if name not in ("frames_in", "frames_out", "dropped_queue_full", "connects"):
            assert f"`rpc_{name}`" in readme, f"counter {name} is documented"


def test_rpc_max_conns_per_client_config_key() -> None:
    assert AgentConfig().rpc_max_conns_per_client == 100 == RpcLimits().max_conns_per_client  # Consul's default
    cfg = from_flat(parse_config_object({"limits": {"rpc_max_conns_per_client": 7}}))
    assert cfg.rpc_max_conns_per_client == 7
    with pytest.raises(ConfigError, match="rpc_max_conns_per_client"):
        from_flat(parse_config_object({"limits": {"rpc_max_conns_per_client": -1}, "data_dir": "/x"})).validate()
    with pytest.raises(ConfigError, match="unknown configuration key"):
        parse_config_object({"limits": {"rpc_max_conns": 1}})


def test_readme_large_state_limits_match_the_code() -> None:
    from pyconsul.agent.raft.config import RaftConfig

    rows = _rows()
    piece = wire.MAX_CHUNK_FRAME - wire.SNAPSHOT_CHUNK
    assert rows["Server RPC: InstallSnapshot pieces (a Raft snapshot of any size streams in them, one in flight per "
                "follower)"] == f"{_size(wire.SNAPSHOT_CHUNK)} + {_size(piece)}"
    cfg = RaftConfig.consul()
    assert rows["Server RPC: AppendEntries batch"] == (
        f"{cfg.max_append_entries} entries, {_size(cfg.max_append_bytes)} past its first entry")
    from pyconsul.agent.http.snapshot import MAX_ARCHIVE
    from pyconsul.agent.state import archive, restore

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    assert f"| `PUT /v1/snapshot` state restored (committed through the Raft log in {_size(restore.PIECE)} " \
           f"pieces, {_size(restore.PIECE * restore.WINDOW)} at a time, every server switches at the last one; no " \
           f"Raft snapshot is taken in between) | {_size(archive.MAX_STATE)} (the decompression cap above; the " \
           f"archive itself must fit the {_size(MAX_ARCHIVE)} body) |" in readme
    assert archive.MAX_STATE <= restore.MAX_TOTAL <= wire.MAX_STREAM


def test_rpc_handshake_timeout_key() -> None:
    """limits.rpc_handshake_timeout (Consul 1.7.1) is read, validated and reaches the RPC TLS listener/dialer."""
    from pyconsul.agent.config_schema import LATER_KEYS
    from pyconsul.agent.raft import rpctls
    from pyconsul.agent.tlsutil import TLSConfig

    assert AgentConfig().rpc_handshake_timeout == rpctls.TLS_HANDSHAKE_TIMEOUT == 5.0  # Consul 1.7.1's default
    assert "limits.rpc_handshake_timeout" not in LATER_KEYS
    cfg = from_flat(parse_config_object({"limits": {"rpc_handshake_timeout": "750ms"}}))
    assert cfg.rpc_handshake_timeout == 0.75
    for bad in ("0s", "-1s"):
        with pytest.raises(ConfigError, match=r"limits\.rpc_handshake_timeout"):
            from_flat(parse_config_object({"limits": {"rpc_handshake_timeout": bad}, "data_dir": "/x"})).validate()
    rt = rpctls.RpcTLS.from_config(TLSConfig(verify_incoming_rpc=True), "dc1", "consul.", cfg.rpc_handshake_timeout)
    assert rt is not None and rt.handshake_timeout == 0.75
    assert _rows()["Server RPC with TLS on: first byte (RPC_TLS or a HELLO) / TLS handshake; connections before "
                   "their handshake count toward the connection limits"] == (
        f"{RpcLimits().hello_timeout:g} s / {rpctls.TLS_HANDSHAKE_TIMEOUT:g} s")
