"""Transmit-limited broadcast queue (memberlist/serf piggybacking).

Each queued message is piggybacked on outgoing packets until it has been sent
`retransmit_limit(mult, n)` times. A newer message about the same name (node) invalidates
the older one. Fewest-transmitted messages go first; among equals the newest first.
Pure: no clocks, no sockets.

Layout: items live in buckets by transmit count, each bucket in queue order, so `get` walks
only the front of the queue instead of sorting it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_USEFUL_SPACE = 16  # stop filling a packet once less than this is left
MAX_MISSES = 8  # ... or once this many queued messages did not fit


def retransmit_limit(mult: int, n: int) -> int:
    return mult * math.ceil(math.log10(n + 1))


@dataclass(eq=False)
class _Item:
    name: str | None
    msg: bytes
    id: int
    transmits: int = 0
    live: bool = True
    notify: list[int] = field(default_factory=list)


class BroadcastQueue:
    def __init__(self, retransmit_mult: int) -> None:
        self.mult = retransmit_mult
        self._buckets: dict[int, dict[int, _Item]] = {}
        self._by_name: dict[str, _Item] = {}
        self._count = 0
        self._next_id = 0
        self.finished: list[int] = []  # notify tokens of broadcasts that are done (sent or invalidated)

    def __len__(self) -> int:
        return self._count

    def _drop(self, it: _Item) -> None:
        it.live = False
        self._buckets[it.transmits].pop(it.id, None)
        if it.name is not None and self._by_name.get(it.name) is it:
            del self._by_name[it.name]
        self._count -= 1
        self.finished.extend(it.notify)

    def queue(self, msg: bytes, name: str | None = None, notify: int | None = None) -> None:
        """Queue msg; when name is set, drop any queued message with the same name."""
        if name is not None:
            old = self._by_name.get(name)
            if old is not None:
                self._drop(old)
        self._next_id += 1
        item = _Item(name, msg, self._next_id)
        if notify is not None:
            item.notify.append(notify)
        self._buckets.setdefault(0, {})[item.id] = item
        if name is not None:
            self._by_name[name] = item
        self._count += 1

    def get(self, overhead: int, limit: int, n_nodes: int) -> list[bytes]:
        """Messages that fit in `limit` bytes, each costing len + overhead; counts a transmit."""
        if not self._count:
            return []
        max_tx = retransmit_limit(self.mult, n_nodes)
        out: list[bytes] = []
        taken: list[_Item] = []
        used = 0
        misses = 0
        for tx in sorted(self._buckets):
            bucket = self._buckets[tx]
            for it in reversed(bucket.values()):
                cost = len(it.msg) + overhead
                if used + cost > limit:
                    misses += 1
                    if misses > MAX_MISSES:
                        break
                    continue
                used += cost
                out.append(it.msg)
                taken.append(it)
                if limit - used < MIN_USEFUL_SPACE:
                    break
            if limit - used < MIN_USEFUL_SPACE or misses > MAX_MISSES:
                break
        for it in taken:
            self._buckets[it.transmits].pop(it.id, None)
            it.transmits += 1
            if it.transmits >= max_tx:
                it.live = False
                if it.name is not None and self._by_name.get(it.name) is it:
                    del self._by_name[it.name]
                self._count -= 1
                self.finished.extend(it.notify)
            else:
                self._buckets.setdefault(it.transmits, {})[it.id] = it
        for tx in [t for t, b in self._buckets.items() if not b]:
            del self._buckets[tx]
        return out

    def reset(self) -> None:
        for bucket in self._buckets.values():
            for it in bucket.values():
                self.finished.extend(it.notify)
        self._buckets.clear()
        self._by_name.clear()
        self._count = 0
