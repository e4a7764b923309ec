#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root) to build and test pyconsul. Idempotent: a second run
# installs nothing and finishes in about a second. Works unattended (CI=true, no stdin).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# systemd: for systemd-analyze (tests/lab/test_systemd_unit.py verifies the role's unit); it does not become
# PID 1 here. debootstrap + systemd-container: lab hosts with `lab_init: systemd` (lab/nspawn.py) boot
# systemd as PID 1 in a systemd-nspawn container on a debootstrapped Debian root. bind9-dnsutils: dig, for the DNS
# interface's tests (tests/integration/test_dns.py). dnsmasq-base: the role's DNS forwarding
# (tests/integration/test_role_dns_forwarding.py, lab hosts share the machine's /usr) and bench/dns's peer;
# dnsperf: bench/dns.
APT_PACKAGES=(python3 python3-venv python3-pip serf iproute2 procps curl openssh-server openssh-client nftables iptables
              systemd debootstrap systemd-container bind9-dnsutils dnsmasq-base dnsperf)

say() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
        echo "bootstrap: need root to run: $*" >&2; return 1; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    # Refresh package lists unless that happened within the last hour.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -n1)" ]; then
        say "apt-get update"
        as_root apt-get update -qq </dev/null
    fi
    say "apt-get install ${missing[*]}"
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
else
    say "system packages present"
fi

if [ ! -x .venv/bin/python ]; then
    say "creating .venv with /usr/bin/python3"
    /usr/bin/python3 -m venv .venv
fi

# Reinstall only when the dependency declaration changed since the last successful install.
stamp=".venv/.pyconsul-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! .venv/bin/python -c 'import agent' 2>/dev/null; then
    say "pip install -e '.[test]'"
    # (drop this machine's pip-config noise about absent local index directories)
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' </dev/null 2>&1 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    echo "$want" > "$stamp"
else
    say "python packages up to date"
fi
say "bootstrap done"
