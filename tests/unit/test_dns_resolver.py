"""The DNS resolver core (agent/dns/resolver.py) against a fake catalog view: names, health, limits."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns.config import DNSConfig, SOAConfig, parse_recursor

NOW = 1_700_000_000.0


def inst(node: str, addr: str, status: str = "passing", *, port: int = 80, tags: tuple[str, ...] = (),
         svc_addr: str = "", dc: str = "dc1") -> r.Instance:
    return r.Instance(node, addr, dc, (("rack", "r1"),), svc_addr, port, tags, status)


class FakeView:
    def __init__(self, data: dict[r.ViewKey, Any]) -> None:
        self.data = data

    def get(self, key: r.ViewKey) -> Any:
        return self.data.get(key, r.MISSING)


WEB = (inst("n1", "10.0.0.1", tags=("v1", "primary")), inst("n2", "10.0.0.2", "warning", tags=("v2",)),
       inst("n3", "10.0.0.3", "critical"))
BASE: dict[r.ViewKey, Any] = {
    ("service", "dc1", "web"): WEB,
    ("service", "dc1", "consul"): (inst("s1", "10.0.1.1", port=8300),),
    ("service", "dc2", "web"): (inst("m1", "10.1.0.1", dc="dc2"),),
    ("service", "dc1", "empty"): (),
    ("node", "dc1", "n1"): r.NodeRecord("n1", "10.0.0.1", "dc1", (("rack", "r1"),)),
    ("node", "dc1", "ghost"): None,
    ("nodes", "dc1", ""): (r.NodeRecord("n1", "10.0.0.1", "dc1", ()),),
}


def ask(name: str, qtype: int = r.A, cfg: DNSConfig | None = None, view: dict[r.ViewKey, Any] | None = None,
        **q: Any) -> r.Result:
    return r.resolve(r.Question(name, qtype, **q), FakeView(BASE if view is None else view), cfg or DNSConfig(),
                     "dc1", NOW, random.Random(1))


def answers(res: r.Result) -> list[r.RR]:
    assert isinstance(res, r.Answer)
    return [rr for g in res.groups for rr in g[0]]


def addrs(res: r.Result) -> set[str]:
    return {rr[3] for rr in answers(res) if rr[1] in (r.A, r.AAAA)}


def test_service_a_excludes_critical_and_keeps_warning() -> None:
    res = ask("web.service.consul.")
    assert isinstance(res, r.Answer) and res.rcode == r.NOERROR
    assert addrs(res) == {"10.0.0.1", "10.0.0.2"}
    assert res.depends == (("service", "dc1", "web"),)


def test_only_passing_excludes_warning() -> None:
    assert addrs(ask("web.service.consul.", cfg=DNSConfig(only_passing=True))) == {"10.0.0.1"}


@pytest.mark.parametrize("name", ["WEB.Service.CONSUL.", "web.service.consul", "web.service.dc1.consul."])
def test_names_are_case_insensitive_and_dc_optional(name: str) -> None:
    res = ask(name)
    assert addrs(res) == {"10.0.0.1", "10.0.0.2"}
    assert all(rr[0] == name for rr in answers(res))  # the owner echoes the question as asked


@pytest.mark.parametrize(("name", "qtype", "want"), [
    ("v1.web.service.consul.", r.A, {"10.0.0.1"}),
    ("V2.web.service.consul.", r.A, {"10.0.0.2"}),
    ("_web._v1.service.consul.", r.SRV, {"n1.node.dc1.consul."}),
    ("_web._tcp.service.consul.", r.SRV, {"n1.node.dc1.consul.", "n2.node.dc1.consul."}),
    ("_web._tcp.consul.", r.SRV, {"n1.node.dc1.consul.", "n2.node.dc1.consul."}),  # "service" optional for SRV
])
def test_tags_and_rfc2782(name: str, qtype: int, want: set[str]) -> None:
    res = ask(name, qtype)
    got = {rr[3][3] for rr in answers(res)} if qtype == r.SRV else addrs(res)
    assert got == want


def test_srv_has_targets_and_additional_addresses() -> None:
    res = ask("web.service.consul.", r.SRV)
    assert isinstance(res, r.Answer)
    for (srv,), extra in res.groups:
        prio, weight, port, target = srv[3]
        assert (prio, weight, port) == (1, 1, 80) and target.endswith(".node.dc1.consul.")
        assert any(e[0] == target and e[1] == r.A for e in extra)
        assert any(e[1] == r.TXT and e[3] == ("rack=r1",) for e in extra)
    no_txt = ask("web.service.consul.", r.SRV, cfg=DNSConfig(enable_additional_node_meta_txt=False))
    assert isinstance(no_txt, r.Answer) and all(e[1] != r.TXT for g in no_txt.groups for e in g[1])


def test_service_address_differs_from_node_uses_addr_name() -> None:
    view = {**BASE, ("service", "dc1", "db"): (inst("n1", "10.0.0.1", svc_addr="10.9.9.9", port=5432),)}
    res = ask("db.service.consul.", r.SRV, view=view)
    assert isinstance(res, r.Answer)
    (srv,), extra = res.groups[0]
    assert srv[3][3] == "0a090909.addr.dc1.consul."
    assert (srv[3][3], r.A, 0, "10.9.9.9") in extra
    assert addrs(ask("db.service.consul.", view=view)) == {"10.9.9.9"}


def test_other_datacenter() -> None:
    assert addrs(ask("web.service.dc2.consul.")) == {"10.1.0.1"}
    srv = ask("web.service.dc2.consul.", r.SRV)
    assert answers(srv)[0][3][3] == "m1.node.dc2.consul."
    need = ask("web.service.dc3.consul.")
    assert need == r.Need(("service", "dc3", "web"))


@pytest.mark.parametrize("name", ["nope.service.consul.", "empty.service.consul.", "ghost.node.consul.",
                                  "consul.", "service.consul.", "node.consul.", "a.b.c.web.service.dc1.x.consul.",
                                  "zz.addr.consul.", "x.y.addr.consul."])
def test_nxdomain_has_soa(name: str) -> None:
    view = {**BASE, ("service", "dc1", "nope"): (), ("service", "dc1", "c.web"): ()}
    res = ask(name, view=view)
    assert isinstance(res, r.Answer) and res.rcode == r.NXDOMAIN, res
    (soa,) = res.authority
    assert soa[1] == r.SOA and soa[0] == "consul." and soa[3][2] == int(NOW)


def test_all_critical_is_nxdomain() -> None:
    view = {("service", "dc1", "bad"): (inst("n3", "10.0.0.3", "critical"),)}
    res = ask("bad.service.consul.", view=view)
    assert isinstance(res, r.Answer) and res.rcode == r.NXDOMAIN


def test_aaaa_for_ipv4_service_is_empty_noerror_with_soa() -> None:
    res = ask("web.service.consul.", r.AAAA)
    assert isinstance(res, r.Answer) and res.rcode == r.NOERROR and not res.groups and res.authority[0][1] == r.SOA


def test_node_lookup_and_txt() -> None:
    res = ask("n1.node.consul.")
    assert addrs(res) == {"10.0.0.1"}
    assert isinstance(res, r.Answer) and res.extra == (("n1.node.consul.", r.TXT, 0, ("rack=r1",)),)
    txt = ask("n1.node.consul.", r.TXT)
    assert [rr[3] for rr in answers(txt)] == [("rack=r1",)]


def test_udp_answer_limit_applies_to_plain_udp_only() -> None:
    many = tuple(inst(f"n{i}", f"10.0.2.{i}") for i in range(20))
    view = {("service", "dc1", "big"): many}
    udp = ask("big.service.consul.", view=view)
    assert isinstance(udp, r.Answer) and len(udp.groups) == 3 and udp.truncated
    assert len(answers(ask("big.service.consul.", view=view, tcp=True))) == 20
    assert len(answers(ask("big.service.consul.", view=view, edns_size=4096))) == 20
    cfg = DNSConfig(udp_answer_limit=20)
    assert len(answers(ask("big.service.consul.", cfg=cfg, view=view))) == r.MAX_PLAIN_UDP_ANSWERS
    capped = ask("big.service.consul.", cfg=DNSConfig(a_record_limit=5), view=view, tcp=True)
    assert len(answers(capped)) == 5


def test_shuffle_depends_on_rng() -> None:
    many = tuple(inst(f"n{i}", f"10.0.2.{i}") for i in range(20))
    view = FakeView({("service", "dc1", "big"): many})
    q = r.Question("big.service.consul.", r.A, tcp=True)
    orders = {tuple(rr[3] for rr in answers(r.resolve(q, view, DNSConfig(), "dc1", NOW, random.Random(s))))
              for s in range(5)}
    assert len(orders) > 1


def test_ttls() -> None:
    cfg = DNSConfig(node_ttl=7, service_ttl={"web": 30, "*": 5})
    assert {rr[2] for rr in answers(ask("web.service.consul.", cfg=cfg))} == {30}
    view = {**BASE, ("service", "dc1", "api"): (inst("n1", "10.0.0.1"),)}
    assert {rr[2] for rr in answers(ask("api.service.consul.", cfg=cfg, view=view))} == {5}
    assert {rr[2] for rr in answers(ask("n1.node.consul.", cfg=cfg))} == {7}


def test_soa_and_ns() -> None:
    cfg = DNSConfig(soa=SOAConfig(refresh=1, retry=2, expire=3, min_ttl=4))
    soa = ask("consul.", r.SOA, cfg=cfg)
    assert isinstance(soa, r.Answer)
    (rr,) = answers(soa)
    assert rr[3] == ("ns.consul.", "hostmaster.consul.", int(NOW), 1, 2, 3, 4) and rr[2] == 4
    assert soa.authority == (("consul.", r.NS, 0, "s1.node.dc1.consul."),)
    ns = ask("consul.", r.NS)
    assert answers(ns) == [("consul.", r.NS, 0, "s1.node.dc1.consul.")]
    assert isinstance(ns, r.Answer) and ns.extra == (("s1.node.dc1.consul.", r.A, 0, "10.0.1.1"),)


def test_alt_domain() -> None:
    cfg = DNSConfig(alt_domain="example.")
    assert addrs(ask("web.service.example.", cfg=cfg)) == {"10.0.0.1", "10.0.0.2"}
    srv = ask("web.service.example.", r.SRV, cfg=cfg)
    assert answers(srv)[0][3][3].endswith(".node.dc1.example.")


def test_addr_names() -> None:
    assert addrs(ask("0a000001.addr.dc1.consul.")) == {"10.0.0.1"}
    six = ask("20010db8000000000000000000000001.addr.dc1.consul.", r.AAAA)
    assert addrs(six) == {"2001:db8::1"}


def test_ptr() -> None:
    res = ask("1.0.0.10.in-addr.arpa.", r.PTR)
    assert [rr[3] for rr in answers(res)] == ["n1.node.dc1.consul."]
    miss = ask("9.9.9.10.in-addr.arpa.", r.PTR)
    assert isinstance(miss, r.Answer) and miss.rcode == r.NXDOMAIN
    assert isinstance(ask("9.9.9.10.in-addr.arpa.", r.PTR, cfg=DNSConfig(recursors=("127.0.0.1",))), r.Recurse)
    assert r.reverse_to_ip("1." + "0." * 31 + "ip6.arpa.") == "::1"
    assert r.reverse_to_ip("1.2.3.in-addr.arpa.") is None


def test_outside_domain_refused_or_recursed() -> None:
    res = ask("example.com.")
    assert isinstance(res, r.Answer) and res.rcode == r.REFUSED
    assert isinstance(ask("example.com.", cfg=DNSConfig(recursors=("127.0.0.1:53",))), r.Recurse)


def test_failed_view_is_servfail_and_missing_is_need() -> None:
    view = {("service", "dc1", "web"): r.Failed("no leader")}
    res = ask("web.service.consul.", view=view)
    assert isinstance(res, r.Answer) and res.rcode == r.SERVFAIL
    assert ask("other.service.consul.") == r.Need(("service", "dc1", "other"))
    assert ask("x.node.consul.") == r.Need(("node", "dc1", "x"))


def test_prepared_query() -> None:
    view = {("query", "dc1", "q1"): ((inst("n1", "10.0.0.1"), inst("n3", "10.0.0.3", "critical")), 9.0),
            ("query", "dc1", "none"): None}
    res = ask("q1.query.consul.", view=view)
    assert addrs(res) == {"10.0.0.1"} and {rr[2] for rr in answers(res)} == {9}
    gone = ask("none.query.consul.", view=view)
    assert isinstance(gone, r.Answer) and gone.rcode == r.NXDOMAIN


def test_axfr_notimp() -> None:
    res = ask("consul.", r.AXFR)
    assert isinstance(res, r.Answer) and res.rcode == r.NOTIMP


def test_instances_from_health_rows() -> None:
    rows = [{"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1", "Meta": {"a": "b"}},
             "Service": {"Service": "web", "Address": "", "Port": 80, "Tags": ["x"],
                         "Weights": {"Passing": 3, "Warning": 1}},
             "Checks": [{"Status": "passing"}, {"Status": "warning"}]}]
    (i,) = r.instances_from_health(rows)
    assert (i.node, i.status, i.weight_passing, i.tags, i.node_meta) == ("n1", "warning", 3, ("x",), (("a", "b"),))
    rows[0]["Checks"] = [{"Status": "warning"}, {"Status": "critical"}]
    assert r.instances_from_health(rows)[0].status == "critical"


def test_config_validation() -> None:
    DNSConfig().validate()
    for bad in (DNSConfig(udp_answer_limit=0), DNSConfig(domain="consul"), DNSConfig(recursors=("nope",)),
                DNSConfig(node_ttl=-1), DNSConfig(recursor_timeout=0), replace(DNSConfig(), soa=SOAConfig(retry=-1))):
        with pytest.raises(ValueError):
            bad.validate()
    assert parse_recursor("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_recursor("[::1]:53") == ("::1", 53)
    assert parse_recursor("::1") == ("::1", 53)


def test_node_meta_txt_encoding() -> None:
    assert r.rfc1464("a=b", "x`y") == "a`=b=x``y"
    assert r.rfc1464(" k ", "v") == "` k` =v"
    node = r.NodeRecord("n9", "10.0.0.9", "dc1", (("rfc1035-raw", "v=spf1 -all"), ("zone", "a")))
    res = ask("n9.node.consul.", r.TXT, view={("node", "dc1", "n9"): node})
    assert sorted(rr[3][0] for rr in answers(res)) == ["v=spf1 -all", "zone=a"]


def test_service_ttl_prefix_wildcards() -> None:
    cfg = DNSConfig(service_ttl={"*": 1, "db-*": 2, "db-main*": 3, "db-main": 4})
    assert [cfg.service_ttl_of(n) for n in ("web", "db-x", "db-main2", "db-main")] == [1, 2, 3, 4]
    assert DNSConfig().service_ttl_of("web") == 0


def test_prepared_query_rfc2782_name() -> None:
    view = {("query", "dc1", "q1"): ((inst("n1", "10.0.0.1"),), None)}
    res = ask("_q1._tcp.query.consul.", r.SRV, view=view)
    assert [rr[3][3] for rr in answers(res)] == ["n1.node.dc1.consul."]


def test_srv_dedups_one_port_of_a_node() -> None:
    same = inst("n1", "10.0.0.1")
    view = {("service", "dc1", "dup"): (same, same, inst("n1", "10.0.0.1", port=81))}
    assert sorted(rr[3][2] for rr in answers(ask("dup.service.consul.", r.SRV, view=view))) == [80, 81]


def test_readme_limits_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.dns import codec, views
    from pyconsul.agent.dns import config as dns_config

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("|")}
    assert rows["DNS answer size: plain UDP / EDNS0 UDP / TCP"] == (
        f"{codec.PLAIN_UDP_SIZE} B and at most {r.MAX_PLAIN_UDP_ANSWERS} instances (`udp_answer_limit`, 1 to "
        f"{dns_config.MAX_UDP_ANSWER_LIMIT}, default {DNSConfig().udp_answer_limit}) / the client's payload size, "
        f"at most {codec.MAX_EDNS_UDP_SIZE} B / 65535 B")
    assert rows["DNS catalog views kept (names asked for, per kind and datacenter) / cached wire answers"] == (
        f"{dns_config.MAX_WATCHED_NAMES} (idle {dns_config.WATCH_IDLE:g} s) / {dns_config.MAX_CACHED_ANSWERS}")
    assert views.MAX_AGE <= dns_config.WATCH_IDLE
    assert rows["DNS queries waiting for one name's first read / for reads or recursors in all"] == (
        f"{dns_config.MAX_PENDING_PER_NAME} / {dns_config.MAX_SLOW_QUERIES}")
    assert rows["DNS-over-TCP connections / idle time per connection"] == (
        f"{dns_config.MAX_TCP_CONNECTIONS} / {dns_config.TCP_IDLE_TIMEOUT:g} s")
    assert rows["`recursors`"] == str(dns_config.MAX_RECURSORS)
    from pyconsul.agent.dns import server

    assert rows["DNS query over UDP: bytes read"] == str(server.MAX_UDP_QUERY)
