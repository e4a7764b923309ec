"""hypothesis fuzzing of the decoders not fuzzed elsewhere (issue 14 item 5), and the snapshot archive
reader's refusals (tar members that could escape or are not regular files).

Already fuzzed elsewhere: gossip packets and streams (test_codec.py, test_gossip_bounds.py, test_lzw.py,
test_keyring.py), raft/RPC frames (test_raft_wire.py: unframe, structured frames, raw bytes), DNS
(test_dns_codec.py). Here: the HTTP request head and chunked-body decoders (agent/httpd/h1.py), the streamed
RPC part frames (raft/wire.py decode_part + Reassembly), the server RPC methods' arguments (server/rpc.py),
the state commands an RPC apply carries (state/commands.py decode), and state/archive.py (random bytes,
mutated archives). Each decoder answers malformed input with its own error type only, never another exception.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.httpd import h1
from pyconsul.agent.raft import wire
from pyconsul.agent.server.common import ReadMeta
from pyconsul.agent.server.rpc import RPCMethods
from pyconsul.agent.state import archive
from pyconsul.agent.state import commands as c_mod
from pyconsul.agent.state.store import StateStore

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- HTTP head

_token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                 min_size=0, max_size=12)
_line = st.binary(max_size=60)


@st.composite
def _heads(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(_token.map(str.encode), _line))
    target = draw(st.one_of(st.just(b"/v1/kv/a"), st.builds(lambda b: b"/" + b, _line), _line,
                            st.just(b"http://h/x"), st.just(b"*")))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1", b""]))
    fields = draw(st.lists(st.one_of(
        st.builds(lambda n, v: n.encode() + b": " + v, _token, _line), _line,
        st.sampled_from([b"Content-Length: 1", b"content-length: 2", b"Host: a", b"host: b", b" folded"]),
    ), max_size=8))
    sep = draw(st.sampled_from([b" ", b"  ", b"\t"]))
    return b"\r\n".join([method + sep + target + b" " + version, *fields])


def _check_head(head: bytes) -> None:
    try:
        method, target, version, fields = h1.parse_head(head)
    except h1._Error as exc:
        assert exc.status in (400, 414, 431, 505) and exc.text
        return
    assert version in ((1, 0), (1, 1)) and method and target[:1] in ("/", "*")
    assert all(k == k.lower() for k in fields)


@FUZZ
@given(_heads())
def test_fuzz_structured_request_heads(head: bytes) -> None:
    _check_head(head)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_raw_request_heads(head: bytes) -> None:
    _check_head(head)


def test_oversized_request_line_and_fields_get_their_status() -> None:
    with pytest.raises(h1._Error) as e:
        h1.parse_head(b"GET /" + b"a" * h1.MAX_LINE + b" HTTP/1.1")
    assert e.value.status == 414
    with pytest.raises(h1._Error) as e:
        h1.parse_head(b"GET / HTTP/1.1\r\n" + b"\r\n".join([b"X: y"] * (h1.MAX_HEADERS + 1)))
    assert e.value.status == 431


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=10), st.integers(0, 64))
def test_fuzz_chunked_bodies(pieces: list[bytes], limit: int) -> None:
    """Arbitrary bytes fed in arbitrary pieces: a 400, or a body never beyond limit + 1 bytes."""
    dec = h1._Chunked(limit)
    buf = bytearray()
    try:
        for p in pieces:
            buf += p
            if dec.feed(buf):
                break
    except h1._Error as exc:
        assert exc.status == 400
        return
    assert dec.size <= limit + 1 and len(dec.body) <= limit + 1


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=16), min_size=1, max_size=6), st.integers(0, 64))
def test_well_formed_chunked_bodies_decode(chunks: list[bytes], limit: int) -> None:
    data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    dec = h1._Chunked(limit)
    buf = bytearray(data)
    assert dec.feed(buf)
    whole = b"".join(chunks)
    if len(whole) <= limit:
        assert bytes(dec.body) == whole and not dec.too_large
    else:
        assert dec.too_large


# ---------------------------------------------------------------- streamed RPC parts

_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.binary(max_size=20),
                    st.text(max_size=5))


@FUZZ
@given(st.lists(st.lists(_values, max_size=5), max_size=6), st.integers(0, 200))
def test_fuzz_part_frames_raise_only_wire_errors(frames: list[list[object]], cap: int) -> None:
    r = wire.Reassembly(cap)
    for raw in frames:
        try:
            offset, total, piece = wire.decode_part(raw)
            done = r.add(offset, total, piece)
        except wire.WireError:
            return
        if done is not None:
            assert len(done) == total <= cap


# ---------------------------------------------------------------- snapshot archives


def _gz(raw: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    return z.compress(raw) + z.flush()


def _tar(*infos: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return _gz(raw.getvalue())


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple[tarfile.TarInfo,
                                                                                                     bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    return info, data


VALID = archive.write_archive(StateStore().snapshot(), 7, 2)


@pytest.mark.parametrize(("member", "why"), [
    (_member("state.bin", tarfile.SYMTYPE, link="/etc/passwd"), "unexpected archive member 'state.bin'"),
    (_member("meta.json", tarfile.SYMTYPE, link="../../outside"), "unexpected archive member 'meta.json'"),
    (_member("state.bin", tarfile.LNKTYPE, link="/etc/shadow"), "unexpected archive member 'state.bin'"),
    (_member("state.bin", tarfile.CHRTYPE), "unexpected archive member 'state.bin'"),
    (_member("state.bin", tarfile.BLKTYPE), "unexpected archive member 'state.bin'"),
    (_member("state.bin", tarfile.FIFOTYPE), "unexpected archive member 'state.bin'"),
    (_member("state.bin", tarfile.DIRTYPE), "unexpected archive member 'state.bin'"),
    (_member("../state.bin", data=b"x"), "unsafe path"),
    (_member("/tmp/state.bin", data=b"x"), "unsafe path"),
    (_member("x/../../meta.json", data=b"{}"), "unsafe path"),
])
def test_archive_members_that_are_not_plain_safe_files_are_refused(member: tuple[tarfile.TarInfo, bytes],
                                                                   why: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(archive.ArchiveError, match=why.replace("(", r"\(").replace(")", r"\)")):
        archive.read_archive(_tar(member))
    assert os.listdir(tmp_path) == [], "the reader wrote something to disk"


def test_a_pax_header_cannot_rename_a_member_outside() -> None:
    info, data = _member("state.bin", data=b"x")
    info.pax_headers = {"path": "../../etc/cron.d/x"}
    with pytest.raises(archive.ArchiveError, match="unsafe path"):
        archive.read_archive(_tar((info, data), fmt=tarfile.PAX_FORMAT))


def test_a_huge_declared_size_is_refused_from_the_header() -> None:
    info = tarfile.TarInfo("state.bin")
    info.size = 2**40
    data = _gz(info.tobuf(format=tarfile.GNU_FORMAT))
    with pytest.raises(archive.ArchiveError, match="too large"):
        archive.read_archive(data)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_are_archive_errors(data: bytes) -> None:
    for candidate in (data, b"\x1f\x8b" + data, _gz(data)):
        with pytest.raises(archive.ArchiveError):
            archive.read_archive(candidate)


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_archives_are_refused_or_read(data: st.DataObject) -> None:
    """Flip, cut or insert bytes of a valid archive: either it still verifies (and reads back the same
    state) or it is an ArchiveError; never another exception."""
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i:]
            if not raw:
                raw += b"\x1f"
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        meta, state = archive.read_archive(bytes(raw))
    except archive.ArchiveError as exc:
        assert str(exc)
        return
    assert state == archive.read_archive(VALID)[1] and meta.index == 7


# ---------------------------------------------------------------- server RPC arguments


class _FakeLocal:
    """A server that answers everything: what is fuzzed is the argument decoding in front of it."""

    is_leader = True
    leader_id = "leader"

    async def apply_local(self, data: bytes) -> Any:
        return True

    async def write(self, data: bytes) -> Any:
        return True

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        assert isinstance(name, str) and isinstance(args, dict) and isinstance(mode, str)
        assert isinstance(index, int) and 0 <= index < 2**64
        assert isinstance(wait, float) and 0.0 <= wait < float("inf")
        return None, ReadMeta(index, True, 0)

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        return what

    def remove_server(self, server_id: str) -> None:
        pass

    def acl_enabled(self) -> bool:
        return False

    async def check_write(self, data: bytes) -> Any:
        return None


_rpc_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.binary(max_size=8),
                         st.text(max_size=8))
_rpc_values = st.recursive(_rpc_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
_read_maps = st.one_of(
    st.fixed_dictionaries({}, optional={"name": _rpc_values, "args": _rpc_values, "what": _rpc_values}),
    st.fixed_dictionaries({"name": st.text(max_size=8), "args": st.dictionaries(st.text(max_size=4), _rpc_scalars)},
                          optional={"mode": _rpc_values, "index": _rpc_values, "wait": _rpc_values,
                                    "token": _rpc_values}))


@FUZZ
@given(st.sampled_from(["apply", "read", "apply_forward", "read_forward", "status", "dc", "remove_self", "x"]),
       st.one_of(_rpc_values, _read_maps, st.builds(lambda m, a: {"method": m, "args": a, "dc": "dc2"},
                                                    st.sampled_from(["read_forward", "status", "apply"]), _read_maps)))
def test_fuzz_server_rpc_arguments_are_bad_requests_or_answers(method: str, args: object) -> None:
    """Whatever msgpack value arrives as a method's argument: a BadRequest with a message, or an answer; never
    a TypeError/ValueError/OverflowError from decoding it (the transport would log those as internal)."""
    methods = RPCMethods(_FakeLocal())  # type: ignore[arg-type]
    try:
        asyncio.run(methods.dispatch(method, args))
    except BadRequest as exc:
        assert str(exc)


# ---------------------------------------------------------------- state commands (the bytes of an RPC apply)

_cmd_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.floats(), st.binary(max_size=8),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=16)


def _field_names(cls: type) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


@FUZZ
@given(st.sampled_from(sorted(c_mod.CommandType)), st.data())
def test_fuzz_command_bodies_raise_only_decode_errors(tag: int, data: st.DataObject) -> None:
    """A command's body with its own field names (so the decoder goes deep) and arbitrary values, or any
    value at all: decode() answers a command or a DecodeError, never another exception."""
    cls = c_mod._CLASSES[c_mod.CommandType(tag)]
    names = _field_names(cls)
    body = data.draw(st.one_of(
        _cmd_values,
        st.fixed_dictionaries({}, optional={n: _cmd_values for n in names}) if names else _cmd_values))
    try:
        raw = msgpack.packb([int(tag), body], use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return
    try:
        c_mod.decode(raw)
    except c_mod.DecodeError as exc:
        assert str(exc)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_command_bytes_raise_only_decode_errors(raw: bytes) -> None:
    try:
        c_mod.decode(raw)
    except c_mod.DecodeError:
        pass
