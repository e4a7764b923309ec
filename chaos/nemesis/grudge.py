"""Partitions as data (ARCHITECTURE.md, principle 9). Pure: no I/O, randomness only from a passed Random.

A grudge maps a host to the set of hosts whose packets it drops (on INPUT). It need not be symmetric: in
Jepsen's majorities-ring for an even-sized window, a drops b's packets while b still hears a. A host that
drops nothing is left out, so ``{}`` is "no partition". Shapes follow jepsen.nemesis:

- ``halves``          — sorted hosts cut into [first ⌊n/2⌋ | the rest];
- ``random-halves``   — the same after a seeded shuffle;
- ``majorities-ring`` — every host sees a majority (itself included), and no two see the same one;
- ``bridge``          — halves, except one host of the second half keeps talking to both sides;
- ``isolate``         — one host (``isolate-leader``: the current leader of a datacenter) cut from all others;
- ``split-groups``    — each group (e.g. each datacenter: ``split-dc``, BJ | SH) becomes one component.

Connectivity under a grudge: a one-way packet src → dst arrives iff src ∉ grudge[dst] (`delivers`); a TCP
connection needs both directions (`connects`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

Grudge = dict[str, frozenset[str]]

SHAPES = ("halves", "random-halves", "majorities-ring", "bridge", "isolate", "isolate-leader", "split-dc")


class GrudgeError(ValueError):
    """A shape that cannot be built from these hosts (unknown shape, too few hosts, unknown host)."""


def normalize(grudge: Mapping[str, Iterable[str]]) -> Grudge:
    """Frozen sets; a host never drops itself; hosts that drop nothing are left out."""
    out: Grudge = {}
    for host, drops in grudge.items():
        s = frozenset(d for d in drops if d != host)
        if s:
            out[host] = s
    return dict(sorted(out.items()))


def complete(components: Sequence[Iterable[str]]) -> Grudge:
    """Every host drops every host outside its own component (jepsen.nemesis/complete-grudge)."""
    comps = [frozenset(c) for c in components]
    every = frozenset().union(*comps) if comps else frozenset()
    return normalize({h: every - c for c in comps for h in c})


def bisect(hosts: Sequence[str]) -> tuple[list[str], list[str]]:
    """[first ⌊n/2⌋ | rest]: with an odd count the second half is the majority (Jepsen's bisect)."""
    hs = list(hosts)
    return hs[:len(hs) // 2], hs[len(hs) // 2:]


def _need(hosts: Sequence[str], n: int, shape: str) -> None:
    if len(set(hosts)) != len(hosts):
        raise GrudgeError(f"{shape}: duplicate hosts in {list(hosts)}")
    if len(hosts) < n:
        raise GrudgeError(f"{shape} needs at least {n} hosts, got {len(hosts)}")


def halves(hosts: Sequence[str]) -> Grudge:
    _need(hosts, 2, "halves")
    return complete(bisect(sorted(hosts)))


def random_halves(hosts: Sequence[str], rng: random.Random) -> Grudge:
    _need(hosts, 2, "random-halves")
    hs = sorted(hosts)
    rng.shuffle(hs)
    return complete(bisect(hs))


def majority(n: int) -> int:
    return n // 2 + 1


def majorities_ring(hosts: Sequence[str], rng: random.Random) -> Grudge:
    """jepsen.nemesis/majorities-ring: shuffle into a ring; each window of m = majority(n) consecutive hosts
    is the view of its middle host, which drops everyone outside it. Needs 3+ hosts (with 2 the only
    majority is everyone)."""
    _need(hosts, 3, "majorities-ring")
    ring = sorted(hosts)
    rng.shuffle(ring)
    n, m = len(ring), majority(len(ring))
    every = frozenset(ring)
    out: dict[str, frozenset[str]] = {}
    for start in range(n):
        window = [ring[(start + k) % n] for k in range(m)]
        out[window[m // 2]] = every - frozenset(window)
    return normalize(out)


def bridge(hosts: Sequence[str]) -> Grudge:
    """jepsen.nemesis/bridge: halves of the sorted hosts; the first host of the second half is the bridge,
    which drops nothing and which nobody drops."""
    _need(hosts, 3, "bridge")
    first, second = bisect(sorted(hosts))
    b = second[0]
    g = complete([first, second])
    return normalize({h: drops - {b} for h, drops in g.items() if h != b})


def isolate(host: str, hosts: Sequence[str]) -> Grudge:
    if host not in hosts:
        raise GrudgeError(f"isolate: {host} is not one of {sorted(hosts)}")
    _need(hosts, 2, "isolate")
    return complete([[host], [h for h in hosts if h != host]])


def split_groups(groups: Mapping[str, Sequence[str]]) -> Grudge:
    """One component per group (e.g. per datacenter). Groups must be disjoint; 2+ non-empty groups."""
    comps = [list(v) for v in groups.values() if v]
    if len(comps) < 2:
        raise GrudgeError(f"split needs at least 2 non-empty groups, got {sorted(groups)}")
    seen: set[str] = set()
    for c in comps:
        if seen & set(c):
            raise GrudgeError(f"split: groups overlap on {sorted(seen & set(c))}")
        seen |= set(c)
    return complete(comps)


def build(shape: str, hosts: Sequence[str], rng: random.Random, *, leader: str | None = None,
          target: str | None = None, groups: Mapping[str, Sequence[str]] | None = None) -> Grudge:
    """The grudge of a named shape. `leader` for isolate-leader, `target` for isolate, `groups` for split-dc."""
    if shape == "halves":
        return halves(hosts)
    if shape == "random-halves":
        return random_halves(hosts, rng)
    if shape == "majorities-ring":
        return majorities_ring(hosts, rng)
    if shape == "bridge":
        return bridge(hosts)
    if shape in ("isolate", "isolate-leader"):
        who = leader if shape == "isolate-leader" else target
        if who is None:
            raise GrudgeError(f"{shape}: no {'leader' if shape == 'isolate-leader' else 'host'} to isolate")
        return isolate(who, hosts)
    if shape == "split-dc":
        return split_groups(groups or {})
    raise GrudgeError(f"unknown partition shape {shape!r}; known: {', '.join(SHAPES)}")


def delivers(grudge: Mapping[str, frozenset[str]], src: str, dst: str) -> bool:
    """Does a packet from src reach dst (dst drops on INPUT what its grudge names)?"""
    return src not in grudge.get(dst, frozenset())


def connects(grudge: Mapping[str, frozenset[str]], a: str, b: str) -> bool:
    """Can a TCP connection between a and b be made (both directions must deliver)?"""
    return delivers(grudge, a, b) and delivers(grudge, b, a)


def cut_pairs(grudge: Mapping[str, frozenset[str]]) -> set[tuple[str, str]]:
    """Every (src, dst) whose packets are dropped."""
    return {(src, dst) for dst, drops in grudge.items() for src in drops}


def components(grudge: Mapping[str, frozenset[str]], hosts: Sequence[str]) -> list[list[str]]:
    """Hosts grouped by mutual (two-way) reachability closure; for a complete grudge, its components."""
    left = sorted(hosts)
    out: list[list[str]] = []
    while left:
        comp = [left.pop(0)]
        i = 0
        while i < len(comp):
            for h in list(left):
                if connects(grudge, comp[i], h):
                    comp.append(h)
                    left.remove(h)
            i += 1
        out.append(sorted(comp))
    return out
