"""``python -m pyconsul.chaos.nemesis heal|status|invoke -i INVENTORY [OP]``.

- heal   — undo every fault on the inventory's hosts (recorded or found); exit 0 if every host is healed;
- status — the recorded faults, then per host: nft table, iptables chain, delayers, agent PID and state;
- invoke — apply one nemesis op given as JSON (e.g. '{"f": "start-partition", "value": "halves"}') and exit
  WITHOUT healing (the fault stays, recorded, until `heal` or a `stop-*` op).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pyconsul.chaos.inventory import InventoryError, RemoteError, load, parallel
from pyconsul.chaos.nemesis.core import Nemesis, heal_command
from pyconsul.chaos.nemesis.faults import FaultLog


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pyconsul.chaos.nemesis")
    p.add_argument("verb", choices=["heal", "status", "invoke"])
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("op", nargs="?", help="invoke: the op as JSON")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_intermixed_args(argv)
    try:
        if args.verb == "heal":
            return heal_command(args.inventory)
        inventory = load(args.inventory)
        if args.verb == "status":
            print(json.dumps(FaultLog.for_inventory(inventory.path).entries(), indent=1, sort_keys=True))
            for name, r in sorted(parallel(list(inventory.hosts), lambda h: h.remote({"op": "status"})).items()):
                print(f"{name}: {r if isinstance(r, Exception) else json.dumps(r, sort_keys=True)}")
            return 0
        if not args.op:
            p.error("invoke needs an OP (JSON)")
        result = Nemesis(inventory, seed=args.seed).invoke(json.loads(args.op))
        print(json.dumps(result, sort_keys=True, default=str))
        return 1 if "error" in result else 0
    except (InventoryError, RemoteError, ValueError) as e:
        print(f"chaos.nemesis: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
