# Run on one server of each datacenter as `python3 -c <this file> <json args>` by the pyconsul role
# (tasks/acl.yml) once a leader is known: makes sure the agent policy and the agent token exist in this
# datacenter's state (ACLs are not replicated across datacenters), and the DNS policy and token when asked
# (pyconsul_acl_dns_token). Standard library only. The management token (acl.tokens.master), the agent
# token's secret (acl.tokens.agent) and the DNS token's secret (acl.tokens.default) are read from the agent's
# config.json, never from the command line. Prints {"changed": bool, "did": [...]}; exit 1 with the reason.
#
# args: url       the agent's HTTP address, http://host:port
#       config    path of the agent's config.json
#       policy    the agent policy's name; rules: its rules (HCL)
#       accessor  the agent token's AccessorID
#       dns       optional {policy, rules, accessor}: the DNS policy and token (secret: acl.tokens.default)
#       dns_off   optional AccessorID of a DNS token the role created once and is no longer asked for: deleted
#       timeout   seconds to wait for the master token to work (the leader creates it when it takes office)
import json
import sys
import time
import urllib.error
import urllib.request

a = json.loads(sys.argv[1])
with open(a["config"]) as f:
    tokens = (json.load(f).get("acl") or {}).get("tokens") or {}
master, secret = tokens.get("master") or "", tokens.get("agent") or ""
if not master or not secret:
    print(json.dumps({"failed": True, "msg": f"{a['config']}: acl.tokens.master and acl.tokens.agent are needed"}))
    sys.exit(1)
if a.get("dns") and not tokens.get("default"):
    print(json.dumps({"failed": True, "msg": f"{a['config']}: acl.tokens.default (the DNS token) is needed"}))
    sys.exit(1)


def call(method, path, body=None):
    """(status, decoded JSON or text) of one request with the management token."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(a["url"] + path, data=data, method=method,
                                 headers={"X-Consul-Token": master, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode(errors="replace")
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw


def must(status, body, what):
    if status != 200:
        print(json.dumps({"failed": True, "msg": f"{what}: {status} {body}"}))
        sys.exit(1)
    return body


def ensure(kind, name, rules, accessor, token_secret, description):
    """The policy `name` with `rules` and the token (accessor, token_secret) holding just that policy exist."""
    did = []
    status, policy = call("GET", "/v1/acl/policy/name/" + name)
    wanted = {"Name": name, "Description": description, "Rules": rules}
    if status == 200:
        if policy.get("Rules") != rules:
            must(*call("PUT", "/v1/acl/policy/" + policy["ID"], wanted), f"update the {kind} policy")
            did.append(f"{kind} policy updated")
    else:
        must(*call("PUT", "/v1/acl/policy", wanted), f"create the {kind} policy")
        did.append(f"{kind} policy created")

    token_body = {"AccessorID": accessor, "SecretID": token_secret, "Description": f"pyconsul {kind} token (role)",
                  "Policies": [{"Name": name}]}
    status, token = call("GET", "/v1/acl/token/" + accessor)
    if status == 200 and token.get("SecretID") != token_secret:
        # A rotated secret: the SecretID of a token cannot change, so the token is replaced.
        must(*call("DELETE", "/v1/acl/token/" + accessor), f"delete the {kind} token with the old secret")
        did.append(f"{kind} token with the old secret deleted")
        status = 404
    if status == 200:
        if [p.get("Name") for p in token.get("Policies") or []] != [name]:
            upd = {k: v for k, v in token_body.items() if k != "SecretID"}
            must(*call("PUT", "/v1/acl/token/" + accessor, upd), f"update the {kind} token")
            did.append(f"{kind} token updated")
    else:
        must(*call("PUT", "/v1/acl/token", token_body), f"create the {kind} token")
        did.append(f"{kind} token created")
    return did


deadline = time.monotonic() + float(a.get("timeout", 60))
while True:
    status, body = call("GET", "/v1/acl/token/self")
    if status == 200 or time.monotonic() >= deadline:
        break
    time.sleep(0.5)
must(status, body, "the management token (acl.tokens.master) does not work here yet")

did = ensure("agent", a["policy"], a["rules"], a["accessor"], secret,
             "pyconsul agents: node registration and coordinates (role)")
if a.get("dns"):
    d = a["dns"]
    did += ensure("DNS", d["policy"], d["rules"], d["accessor"], tokens["default"],
                  "pyconsul DNS: what the agents' default token (acl.tokens.default) may read (role)")
elif a.get("dns_off"):
    status, _ = call("GET", "/v1/acl/token/" + a["dns_off"])
    if status == 200:
        must(*call("DELETE", "/v1/acl/token/" + a["dns_off"]), "delete the DNS token")
        did.append("DNS token deleted")
print(json.dumps({"changed": bool(did), "did": did}))
