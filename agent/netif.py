"""This host's interface addresses (shell side: it asks the kernel, so no pure core imports it).

`ifaddr` wraps getifaddrs(3), which reports every address of every interface: secondary IPv4
addresses (`ip addr add` on an interface that already has one) and IPv6 ones included, unlike the
old SIOCGIFADDR ioctl, which saw only the first IPv4 address of each interface.
"""

from __future__ import annotations

import ipaddress


def host_addresses() -> list[str]:
    """Every address of this host's interfaces, interfaces in index order, each interface's
    addresses as the kernel lists them (primary IPv4 first). Link-local IPv6 addresses carry
    their zone (`fe80::1%eth0`). Empty if the interfaces cannot be read."""
    import ifaddr  # lazily: only an agent bound to 0.0.0.0 needs it (ctypes is ~1 MiB resident)

    try:
        adapters = sorted(ifaddr.get_adapters(), key=lambda a: a.index or 0)
    except OSError:
        return []
    out: list[str] = []
    for adapter in adapters:
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):  # IPv6: (address, flowinfo, scope_id)
                addr = ip.ip[0]
                if ipaddress.IPv6Address(addr.split("%")[0]).is_link_local and "%" not in addr:
                    addr = f"{addr}%{adapter.name}"
            else:
                addr = ip.ip
            if addr not in out:
                out.append(addr)
    return out
