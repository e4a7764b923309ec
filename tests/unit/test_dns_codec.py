"""The DNS codec (agent/dns/codec.py): malformed queries get FORMERR/NOTIMP/REFUSED or are dropped, never an
exception; answers decode with dnspython (the oracle) and fit the size they must."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.agent.dns import codec
from pyconsul.agent.dns import resolver as r


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def qname(*labels: bytes) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


GOOD = header() + qname(b"web", b"service", b"consul") + struct.pack("!HH", 1, 1)


def outcome(data: bytes) -> str:
    """What the codec does with `data`: "ok", "drop:<reason>" or "<RCODE>:<reason>"."""
    try:
        codec.parse_query(data)
    except codec.Drop as exc:
        return f"drop:{exc.reason}"
    except codec.BadQuery as exc:
        resp = dns.message.from_wire(codec.error_response(data, exc.rcode))
        assert resp.id == struct.unpack("!H", data[:2])[0] and resp.flags & dns.flags.QR
        return f"{dns.rcode.to_text(resp.rcode())}:{exc.reason}"
    return "ok"


CORPUS = [
    (GOOD, "ok"),
    (b"", "drop:short"),
    (GOOD[:11], "drop:short"),
    (GOOD[:12], "FORMERR:malformed"),  # a header claiming a question that is not there
    (GOOD[:20], "FORMERR:malformed"),  # truncated in the name
    (GOOD[:-2], "FORMERR:malformed"),  # truncated in the class
    (GOOD + b"\0\0\0", "FORMERR:trailing"),
    (header(qd=0), "FORMERR:questions"),
    (header(qd=2) + GOOD[12:] + GOOD[12:], "FORMERR:questions"),
    (header(an=1) + GOOD[12:], "FORMERR:sections"),
    (header(flags=0x8100) + GOOD[12:], "drop:response"),
    (header(flags=0x2100) + GOOD[12:], "NOTIMP:opcode"),  # UPDATE
    (header(flags=0x1000) + GOOD[12:], "NOTIMP:opcode"),  # STATUS
    (header() + qname(b"web") + struct.pack("!HH", 1, 3), "REFUSED:class"),  # CHAOS
    (header() + qname(b"web") + struct.pack("!HH", 1, 4242), "REFUSED:class"),
    (header() + qname(b"web") + struct.pack("!HH", 41, 1), "FORMERR:qtype"),  # OPT as a question
    (header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1), "FORMERR:malformed"),  # a pointer to itself
    (header() + b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1), "FORMERR:malformed"),  # a loop through the header
    (header() + b"\x01a\xc0\x0e" + struct.pack("!HH", 1, 1), "FORMERR:malformed"),  # forward pointer
    (header() + b"\x40" + b"a" * 64 + b"\0" + struct.pack("!HH", 1, 1), "FORMERR:malformed"),  # label > 63
    (header() + qname(*[b"a" * 63] * 5) + struct.pack("!HH", 1, 1), "FORMERR:malformed"),  # name > 255
    (header(ar=1) + GOOD[12:] + b"\0\0\x29\x10\0\0\0\0\0\0\x05", "FORMERR:malformed"),  # OPT rdata cut
    (GOOD + b"\0" * 70000, "FORMERR:trailing"),  # oversized
]


@pytest.mark.parametrize(("data", "want"), CORPUS)
def test_corpus(data: bytes, want: str) -> None:
    assert outcome(data) == want


def test_unknown_type_parses() -> None:
    q = codec.parse_query(header() + qname(b"web") + struct.pack("!HH", 4242, 1))
    assert q.question.qtype == 4242


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    outcome(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(0, len(GOOD)))
def test_mutated_queries_never_raise_anything_else(noise: bytes, at: int) -> None:
    outcome(GOOD[:at] + noise + GOOD[at + len(noise):])
    outcome(GOOD[:at] + noise)


def question(name: str, qtype: str, *, edns: int | None = None, tcp: bool = False) -> codec.Query:
    m = dns.message.make_query(name, qtype, use_edns=edns is not None, payload=edns or 512)
    return codec.parse_query(m.to_wire(), tcp)


def group(i: int) -> tuple[tuple[r.RR, ...], tuple[r.RR, ...]]:
    target = f"node-with-a-longish-name-{i}.node.dc1.consul."
    srv: r.RR = ("big.service.consul.", r.SRV, 0, (1, 1, 8000 + i, target))
    return (srv,), ((target, r.A, 0, f"10.0.{i // 250}.{i % 250}"),)


@pytest.mark.parametrize(("edns", "tcp", "limit"), [(None, False, 512), (1232, False, 1232), (None, True, 65535)])
def test_answers_fit_and_truncate(edns: int | None, tcp: bool, limit: int) -> None:
    q = question("big.service.consul.", "SRV", edns=edns, tcp=tcp)
    ans = r.Answer(r.NOERROR, tuple(group(i) for i in range(100)))
    wire = codec.encode_answer(q, ans, recursion_available=False, enable_truncate=True)
    assert len(wire) <= limit
    msg = dns.message.from_wire(wire)
    n = sum(len(s) for s in msg.answer)
    assert n >= 1
    assert bool(msg.flags & dns.flags.TC) == (n < 100)
    assert sum(len(s) for s in msg.additional if s.rdtype == dns.rdatatype.A) == n  # every SRV keeps its A
    quiet = codec.encode_answer(q, ans, recursion_available=False, enable_truncate=False)
    assert not dns.message.from_wire(quiet).flags & dns.flags.TC


def test_answer_roundtrip_all_types() -> None:
    q = question("Web.Service.consul.", "ANY", edns=4096)
    soa: r.RR = ("consul.", r.SOA, 5, ("ns.consul.", "hostmaster.consul.", 7, 3600, 600, 86400, 5))
    ans = r.Answer(r.NOERROR, (
        ((("Web.Service.consul.", r.A, 1, "10.0.0.1"),), ()),
        ((("Web.Service.consul.", r.AAAA, 1, "::1"),), ()),
        ((("Web.Service.consul.", r.TXT, 1, ("a=b",)),), ()),
        ((("Web.Service.consul.", r.CNAME, 1, "x.example."),), ()),
        ((("1.0.0.10.in-addr.arpa.", r.PTR, 1, "n1.node.dc1.consul."),), ()),
        ((("consul.", r.NS, 1, "n1.node.dc1.consul."),), ()),
    ), authority=(soa,))
    msg = dns.message.from_wire(codec.encode_answer(q, ans, recursion_available=True, enable_truncate=False))
    assert msg.flags & dns.flags.AA and msg.flags & dns.flags.RA and msg.flags & dns.flags.RD
    assert msg.question[0].name.to_text() == "Web.Service.consul."
    assert sorted(dns.rdatatype.to_text(s.rdtype) for s in msg.answer) == ["A", "AAAA", "CNAME", "NS", "PTR", "TXT"]
    assert msg.authority[0][0].serial == 7 and msg.edns == 0


def test_over_64k_over_tcp_is_trimmed() -> None:
    q = question("big.service.consul.", "SRV", tcp=True)
    ans = r.Answer(r.NOERROR, tuple(group(i) for i in range(2000)))
    wire = codec.encode_answer(q, ans, recursion_available=False, enable_truncate=True)
    assert 60000 < len(wire) <= 65535
    assert dns.message.from_wire(wire).flags & dns.flags.TC


def test_cache_key_ignores_id_and_edns_options_only() -> None:
    def wire(qid: int, name: str = "web.service.consul", qtype: str = "A", **kw: object) -> bytes:
        m = dns.message.make_query(name, qtype, **kw)  # type: ignore[arg-type]
        m.id = qid
        return m.to_wire()

    cookie = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")]
    other = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"87654321")]
    assert codec.cache_key(wire(1)) == codec.cache_key(wire(2)) is not None
    assert codec.cache_key(wire(1, use_edns=0, options=cookie)) == codec.cache_key(wire(2, use_edns=0, options=other))
    distinct = {codec.cache_key(w) for w in (wire(1), wire(1, qtype="SRV"), wire(1, name="WEB.service.consul"),
                                             wire(1, use_edns=0), wire(1, use_edns=0, payload=4096))}
    assert len(distinct) == 5 and None not in distinct
    good = wire(1, use_edns=0)
    assert codec.cache_key(good[:-1]) is None and codec.cache_key(good + b"x") is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_cache_key_total(data: bytes) -> None:
    codec.cache_key(data)  # never raises
    outcome(data)


def test_cache_key_of_a_query_without_options_is_its_bytes() -> None:
    for kw in ({}, {"use_edns": 0}, {"use_edns": 0, "payload": 4096}):
        w = dns.message.make_query("web.service.consul", "A", **kw).to_wire()  # type: ignore[arg-type]
        assert codec.cache_key(w) == w[2:]
    plain = dns.message.make_query("web.service.consul", "A", use_edns=0).to_wire()
    cookie = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")]
    with_cookie = dns.message.make_query("web.service.consul", "A", use_edns=0, options=cookie).to_wire()
    assert codec.cache_key(with_cookie) == plain[2:]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=18, max_size=18), st.sampled_from(["A", "SRV"]))
def test_another_spelling_is_the_cached_answer_with_its_question_patched_in(flips: list[bool], qtype: str) -> None:
    base = "web.service.consul."
    spelled = "".join(c.upper() if f else c for c, f in zip(base, flips, strict=False)) + base[len(flips):]

    def answer_for(name: str) -> tuple[bytes, bytes]:
        data = dns.message.make_query(name, qtype).to_wire()
        q = codec.parse_query(data)
        groups = tuple(group(i) for i in range(3)) if qtype == "SRV" else tuple(
            (((name, r.A, 0, f"10.0.0.{i}"),), ()) for i in range(3))
        return data, codec.encode_answer(q, r.Answer(r.NOERROR, groups), recursion_available=False,
                                         enable_truncate=False)

    data_a, wire_a = answer_for(base)
    data_b, wire_b = answer_for(spelled)
    key_a, key_b = codec.cache_key(data_a), codec.cache_key(data_b)
    assert key_a is not None and key_b is not None
    (fold_a, qend), (fold_b, _) = codec.folded_key(key_a), codec.folded_key(key_b)
    assert fold_a == fold_b
    patched = data_b[:2] + wire_a[2:12] + data_b[12:qend] + wire_a[qend:]  # what the hot path sends
    assert patched == wire_b
    assert dns.message.from_wire(patched).question[0].name.to_text() == spelled
