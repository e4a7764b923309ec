"""Transmit-limited broadcast queue (memberlist/serf piggybacking).

Each queued message is piggybacked on outgoing packets until it has been sent
`retransmit_limit(mult, n)` times. A newer message about the same name (node) invalidates
the older one. Fewest-transmitted messages go first; among equals the newest first.
Pure: no clocks, no sockets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def retransmit_limit(mult: int, n: int) -> int:
    return mult * int(math.ceil(math.log10(n + 1)))


@dataclass
class _Item:
    name: str | None
    msg: bytes
    id: int
    transmits: int = 0
    notify: list[int] = field(default_factory=list)


class BroadcastQueue:
    def __init__(self, retransmit_mult: int) -> None:
        self.mult = retransmit_mult
        self._items: list[_Item] = []
        self._next_id = 0
        self.finished: list[int] = []  # notify tokens of broadcasts that are done (sent or invalidated)

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, msg: bytes, name: str | None = None, notify: int | None = None) -> None:
        """Queue msg; when name is set, drop any queued message with the same name."""
        if name is not None:
            keep = []
            for it in self._items:
                if it.name == name:
                    self.finished.extend(it.notify)
                else:
                    keep.append(it)
            self._items = keep
        self._next_id += 1
        item = _Item(name, msg, self._next_id)
        if notify is not None:
            item.notify.append(notify)
        self._items.append(item)

    def get(self, overhead: int, limit: int, n_nodes: int) -> list[bytes]:
        """Messages that fit in `limit` bytes, each costing len + overhead; counts a transmit."""
        if not self._items:
            return []
        max_tx = retransmit_limit(self.mult, n_nodes)
        self._items.sort(key=lambda it: (it.transmits, -it.id))
        out: list[bytes] = []
        used = 0
        keep: list[_Item] = []
        for it in self._items:
            cost = len(it.msg) + overhead
            if used + cost > limit:
                keep.append(it)
                continue
            used += cost
            out.append(it.msg)
            it.transmits += 1
            if it.transmits >= max_tx:
                self.finished.extend(it.notify)
            else:
                keep.append(it)
        self._items = keep
        return out

    def reset(self) -> None:
        for it in self._items:
            self.finished.extend(it.notify)
        self._items = []
