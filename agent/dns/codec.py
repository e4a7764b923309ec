"""DNS wire format for the DNS interface: parse a query, encode an answer (dnspython underneath).

Every malformed input ends in `BadQuery(rcode, reason)` (or `Drop`), never another exception: the fuzz tests
(tests/unit/test_dns_codec.py) feed truncated, oversized and random packets, compression loops, 0 or 2+
questions, unknown opcodes, classes and types. What is answered how:
  shorter than a header, or a response (QR=1)       -> dropped (never answer an answer: no reflection loops)
  opcode other than QUERY                           -> NOTIMP
  undecodable, trailing bytes, not exactly 1 question, answers/authority in a query, OPT as qtype -> FORMERR
  class other than IN (or ANY)                      -> REFUSED
  zone transfers (AXFR, IXFR)                       -> NOTIMP (the resolver)
The reason is a short word counted in the server's stats (`pyconsul info`, dns section).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyconsul.agent.dns import resolver as r

if TYPE_CHECKING:  # dnspython is imported by load(), on the first query (see there)
    import dns.edns
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.opcode
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    from dns.rdtypes.ANY.CNAME import CNAME
    from dns.rdtypes.ANY.NS import NS
    from dns.rdtypes.ANY.PTR import PTR
    from dns.rdtypes.ANY.SOA import SOA
    from dns.rdtypes.ANY.TXT import TXT
    from dns.rdtypes.IN.SRV import SRV

_loaded = False


def loaded() -> bool:
    return _loaded


def load() -> None:
    """Import dnspython (about 3 MiB of memory and 20-30 ms): DNS is on by default, but most agents never get a
    query, so an agent pays for it at its first one (the server calls this in a worker thread; parse_query
    calls it too, for direct callers). cache_key, folded_key and error_response never need it."""
    global _loaded, dns, CNAME, NS, PTR, SOA, TXT, SRV
    if _loaded:
        return
    import dns.edns
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.opcode
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    from dns.rdtypes.ANY.CNAME import CNAME
    from dns.rdtypes.ANY.NS import NS
    from dns.rdtypes.ANY.PTR import PTR
    from dns.rdtypes.ANY.SOA import SOA
    from dns.rdtypes.ANY.TXT import TXT
    from dns.rdtypes.IN.SRV import SRV

    r.MISSING  # noqa: B018 -- runs the lazily imported resolver (agent/dns/__init__.py) here too, off the loop
    _loaded = True


HEADER = struct.Struct("!HHHHHH")
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
PLAIN_UDP_SIZE = 512
MAX_EDNS_UDP_SIZE = 65507 - 28  # what fits one IPv4 UDP datagram... less the IP and UDP headers


_TOO_BIG = 65536  # the size of _encode's answer that fits no limit (built only then)


class Drop(Exception):
    """Not worth an answer (too short to carry an ID, or itself a response)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class BadQuery(Exception):
    def __init__(self, rcode: int, reason: str) -> None:
        self.rcode = rcode
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    rd: bool
    question: r.Question
    edns: bool
    message: dns.message.Message  # the parsed query (recursion forwards its wire form)


def parse_query(data: bytes, tcp: bool = False) -> Query:
    """Decode one query; raise Drop or BadQuery for anything we will not resolve."""
    if len(data) < HEADER.size:
        raise Drop("short")
    qid, flags, qd, an, ns, _ar = HEADER.unpack_from(data)
    if flags & QR:
        raise Drop("response")
    if (flags >> 11) & 0xF != 0:
        raise BadQuery(r.NOTIMP, "opcode")
    if qd != 1:
        raise BadQuery(r.FORMERR, "questions")
    if an or ns:
        raise BadQuery(r.FORMERR, "sections")
    load()
    try:
        msg = dns.message.from_wire(data, ignore_trailing=False, one_rr_per_rrset=True)
    except dns.message.TrailingJunk:
        raise BadQuery(r.FORMERR, "trailing") from None
    except (dns.exception.DNSException, ValueError, KeyError, IndexError, UnicodeError, struct.error):
        raise BadQuery(r.FORMERR, "malformed") from None
    if len(msg.question) != 1:
        raise BadQuery(r.FORMERR, "questions")
    q = msg.question[0]
    if q.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        raise BadQuery(r.REFUSED, "class")
    if q.rdtype in (r.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY):
        raise BadQuery(r.FORMERR, "qtype")
    edns_size = 0
    if msg.edns >= 0:
        edns_size = max(PLAIN_UDP_SIZE, min(msg.payload, MAX_EDNS_UDP_SIZE))
    name = q.name.to_text()
    return Query(qid, bool(flags & RD), r.Question(name, int(q.rdtype), tcp, edns_size), msg.edns >= 0, msg)


def cache_key(data: bytes) -> bytes | None:
    """What identifies a query's answer, cheaply: the bytes after the ID, with the options of an OPT record
    left out (a client's EDNS cookie differs per query; our answers never depend on options). For a query
    without options that is exactly data[2:], so the server's hot path tries that first. None when the packet
    has another shape (then it is parsed in full). Queries with equal keys have equal answers, but for IDs."""
    n = len(data)
    i = 12
    while i < n:
        length = data[i]
        if length == 0:
            break
        if length & 0xC0:
            return None
        i += length + 1
    end = i + 5  # the root label, qtype, qclass
    if end > n or data[4:6] != b"\x00\x01" or data[6:10] != b"\x00\x00\x00\x00":
        return None
    ar = data[11] | data[10] << 8
    if end == n:
        return data[2:end] if ar == 0 else None
    if ar != 1 or end + 11 > n or data[end] != 0 or data[end + 1:end + 3] != b"\x00\x29":
        return None
    if end + 11 + (data[end + 9] << 8 | data[end + 10]) != n:  # the OPT's rdata must end the packet
        return None
    if end + 11 == n:
        return data[2:]
    return data[2:end + 9] + b"\x00\x00"  # as the same query without options


def folded_key(key: bytes) -> tuple[bytes, int]:
    """A cache key with its question name in lower case (DNS names are ASCII case-insensitive, and label
    lengths, at most 63, are never letters), and the offset in the wire message where the question name ends.
    Questions told apart by letter case only (a resolver's 0x20 randomisation) share one answer, whose wire
    form differs from another spelling's in the question name's bytes alone: answers point at them."""
    j = 10  # the question name starts after the flags and counts (the key has no ID)
    while key[j]:
        j += key[j] + 1
    return key[:10] + key[10:j].lower() + key[j:], j + 3


def error_response(data: bytes, rcode: int, *, recursion_available: bool = False) -> bytes:
    """A header-only answer carrying the query's ID, opcode and RD bit and `rcode` (FORMERR, NOTIMP, ...)."""
    qid, flags = struct.unpack_from("!HH", data)
    ra = RA if recursion_available else 0
    return HEADER.pack(qid, QR | (flags & 0x7800) | (flags & RD) | ra | (rcode & 0xF), 0, 0, 0, 0)


def _rdata(rtype: int, data: Any) -> dns.rdata.Rdata:
    """One record's data (resolver.RR's fourth item) as a dnspython Rdata."""
    IN = dns.rdataclass.IN
    rt = dns.rdatatype.RdataType.make(rtype)
    if rtype in (r.A, r.AAAA):
        return dns.rdata.from_text(IN, rt, str(data))
    if rtype in (r.NS, r.CNAME, r.PTR):
        cls: Any = {r.NS: NS, r.CNAME: CNAME, r.PTR: PTR}[rtype]
        out: dns.rdata.Rdata = cls(IN, rt, dns.name.from_text(str(data)))
        return out
    if rtype == r.SRV:
        srv: Any = SRV
        out = srv(IN, rt, int(data[0]), int(data[1]), int(data[2]), dns.name.from_text(str(data[3])))
        return out
    if rtype == r.TXT:
        txt: Any = TXT
        out = txt(IN, rt, tuple(str(x).encode()[:255] for x in data))
        return out
    if rtype == r.SOA:
        soa: Any = SOA
        out = soa(IN, rt, dns.name.from_text(str(data[0])), dns.name.from_text(str(data[1])),
                  *(int(x) for x in data[2:7]))
        return out
    raise ValueError(f"cannot encode record type {rtype}")


def _section(records: Sequence[r.RR]) -> list[dns.rrset.RRset]:
    out: list[dns.rrset.RRset] = []
    for owner, rtype, ttl, data in records:
        rrset = dns.rrset.RRset(dns.name.from_text(owner), dns.rdataclass.IN, dns.rdatatype.RdataType.make(rtype))
        rrset.update_ttl(ttl)
        rrset.add(_rdata(rtype, data))
        out.append(rrset)
    return out


def encode_answer(query: Query, answer: r.Answer, *, recursion_available: bool, enable_truncate: bool,
                  max_size: int | None = None) -> bytes:
    """The wire answer to `query`. Over UDP it fits max(512, the client's EDNS0 size): instances (groups) are
    dropped from the end until it does, with TC=1 when enable_truncate (Consul's trimUDPResponse). Over TCP it
    fits 65535 bytes."""
    load()
    q = query.question
    limit = max_size or (65535 if q.tcp else (q.edns_size or PLAIN_UDP_SIZE))
    groups = list(answer.groups)
    wire = _encode(query, answer, groups, recursion_available, answer.truncated and enable_truncate)
    if len(wire) <= limit:
        return wire
    lo, hi = 0, len(groups) - 1  # the largest prefix of groups that fits: groups[:lo] fits, groups[:hi+1] not
    best = _encode(query, answer, [], recursion_available, enable_truncate)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        w = _encode(query, answer, groups[:mid], recursion_available, enable_truncate)
        if len(w) <= limit:
            best, lo = w, mid
        else:
            hi = mid - 1
    if len(best) > limit:  # nothing fits (a huge question?): the header alone, truncated
        best = best[:HEADER.size]
        qid, flags, *_ = HEADER.unpack(best)
        best = HEADER.pack(qid, flags | TC, 0, 0, 0, 0)
    return best


def _encode(query: Query, answer: r.Answer, groups: Sequence[tuple[tuple[r.RR, ...], tuple[r.RR, ...]]],
            recursion_available: bool, tc: bool) -> bytes:
    m = dns.message.Message(id=query.id)
    flags = dns.flags.QR | dns.flags.AA
    if query.rd:
        flags |= dns.flags.RD
    if recursion_available:
        flags |= dns.flags.RA
    if tc:
        flags |= dns.flags.TC
    m.flags = flags
    m.set_rcode(dns.rcode.Rcode.make(answer.rcode))
    m.question = list(query.message.question)
    m.answer = _section([rr for g in groups for rr in g[0]])
    m.authority = _section(answer.authority)
    m.additional = _section([rr for g in groups for rr in g[1]] + list(answer.extra))
    if query.edns:
        m.use_edns(0, payload=max(PLAIN_UDP_SIZE, query.question.edns_size or PLAIN_UDP_SIZE))
    try:
        return m.to_wire(max_size=65535)  # we trim ourselves (dnspython would stop at the EDNS payload size)
    except dns.exception.TooBig:
        return bytes(_TOO_BIG)


