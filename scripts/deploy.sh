#!/usr/bin/env bash
# The main job, on this machine: lab hosts for the guide's topology (inventories/bj_sh: BJ node1-3
# servers, SH node4 server + node5 client; network namespaces with their own sshd), then
# `ansible-playbook site.yml` over SSH, then the cluster as an operator sees it: members, WAN
# members and the leader of each datacenter. The hosts keep running afterwards;
# `bash scripts/deploy.sh down` removes them. INVENTORY=... deploys another inventory.
set -euo pipefail
cd "$(dirname "$0")/.."
INV=${INVENTORY:-inventories/bj_sh}

if [ "${1:-}" = "down" ]; then
    exec .venv/bin/pyconsul-lab down -i "$INV"
fi

bash scripts/bootstrap.sh
echo "==> pyconsul-lab up -i $INV"
.venv/bin/pyconsul-lab up -i "$INV"
echo "==> ansible-playbook site.yml -i $INV"
ANSIBLE_CONFIG="$PWD/ansible.cfg" .venv/bin/ansible-playbook site.yml -i "$INV"

# The cluster from the controller, through the first host's HTTP API (as `pyconsul` on any host would).
first=$(.venv/bin/ansible-inventory -i "$INV" --list | .venv/bin/python -c '
import json, sys
inv = json.load(sys.stdin)
hosts = sorted(inv["_meta"]["hostvars"].items())
print(hosts[0][1]["ansible_host"])')
api="-http-addr=$first:8500"
echo
echo "==> pyconsul members"
.venv/bin/pyconsul members "$api"
echo
echo "==> pyconsul members -wan"
.venv/bin/pyconsul members -wan "$api"
for dc in $(.venv/bin/pyconsul catalog datacenters "$api"); do
    echo
    leader=$(curl -s "http://$first:8500/v1/status/leader?dc=$dc")
    echo "==> leader of $dc: ${leader//\"/}"
    .venv/bin/pyconsul operator raft list-peers -datacenter="$dc" "$api"
done
echo
echo "==> the lab keeps running: pyconsul-lab ssh node1 -i $INV; remove it with: bash scripts/deploy.sh down"
