"""The selectors Consul 1.7 accepts on each filtering endpoint, as `fields` schemas for compile().

go-bexpr derives them by reflection from the Go type an endpoint filters (structs.Node, NodeService,
ServiceNode, HealthCheck, CheckServiceNode, api.AgentService); here they are written out with the JSON
field names those types encode to (which is what pyconsul's items hold). Types: `str`, `int`, `bool`,
[element] for lists, {"*": value} for maps with string keys, {field: type} for objects (see evaluate.py
for the operators each allows). Connect fields are listed although pyconsul has no Connect yet, so
that a filter naming them is accepted (and does not match) rather than refused.

    compile(request_filter, fields=ENDPOINT_FIELDS["/v1/health/service/"])
"""

from __future__ import annotations

from typing import Any

SERVICE_ADDRESS: dict[str, Any] = {"Address": str, "Port": int}
WEIGHTS: dict[str, Any] = {"Passing": int, "Warning": int}
MESH_GATEWAY: dict[str, Any] = {"Mode": str}
UPSTREAM: dict[str, Any] = {
    "DestinationType": str, "DestinationNamespace": str, "DestinationName": str, "Datacenter": str,
    "LocalBindAddress": str, "LocalBindPort": int, "MeshGateway": MESH_GATEWAY,
}
EXPOSE: dict[str, Any] = {
    "Checks": bool,
    "Paths": [{"ListenerPort": int, "Path": str, "LocalPathPort": int, "Protocol": str, "ParsedFromCheck": bool}],
}
PROXY: dict[str, Any] = {
    "DestinationServiceName": str, "DestinationServiceID": str, "LocalServiceAddress": str,
    "LocalServicePort": int, "Upstreams": [UPSTREAM], "MeshGateway": MESH_GATEWAY, "Expose": EXPOSE,
}
CONNECT: dict[str, Any] = {"Native": bool}

# structs.Node: /v1/catalog/nodes
NODE: dict[str, Any] = {
    "ID": str, "Node": str, "Address": str, "Datacenter": str, "TaggedAddresses": {"*": str}, "Meta": {"*": str},
}
# structs.NodeService and api.AgentService: /v1/agent/services (values), /v1/catalog/node/<n> (Services values)
NODE_SERVICE: dict[str, Any] = {
    "Kind": str, "ID": str, "Service": str, "Tags": [str], "Address": str,
    "TaggedAddresses": {"*": SERVICE_ADDRESS}, "Meta": {"*": str}, "Port": int, "Weights": WEIGHTS,
    "EnableTagOverride": bool, "Proxy": PROXY, "Connect": CONNECT,
}
# structs.ServiceNode: /v1/catalog/service/<s>
SERVICE_NODE: dict[str, Any] = {
    "ID": str, "Node": str, "Address": str, "Datacenter": str, "TaggedAddresses": {"*": str},
    "NodeMeta": {"*": str}, "ServiceKind": str, "ServiceID": str, "ServiceName": str, "ServiceTags": [str],
    "ServiceAddress": str, "ServiceTaggedAddresses": {"*": SERVICE_ADDRESS}, "ServiceMeta": {"*": str},
    "ServicePort": int, "ServiceWeights": WEIGHTS, "ServiceEnableTagOverride": bool, "ServiceProxy": PROXY,
    "ServiceConnect": CONNECT,
}
# structs.HealthCheck: /v1/agent/checks (values), /v1/health/node/<n>, /checks/<s>, /state/<state>
HEALTH_CHECK: dict[str, Any] = {
    "Node": str, "CheckID": str, "Name": str, "Status": str, "Notes": str, "Output": str, "ServiceID": str,
    "ServiceName": str, "ServiceTags": [str], "Type": str,
}
# structs.CheckServiceNode: /v1/health/service/<s>, /v1/health/connect/<s>
CHECK_SERVICE_NODE: dict[str, Any] = {"Node": NODE, "Service": NODE_SERVICE, "Checks": [HEALTH_CHECK]}

# Path (prefix for the ones taking a name) -> the schema of one filtered item.
ENDPOINT_FIELDS: dict[str, dict[str, Any]] = {
    "/v1/agent/services": NODE_SERVICE,
    "/v1/agent/checks": HEALTH_CHECK,
    "/v1/catalog/nodes": NODE,
    "/v1/catalog/service/": SERVICE_NODE,
    "/v1/catalog/node/": NODE_SERVICE,
    "/v1/catalog/node-services/": NODE_SERVICE,
    "/v1/catalog/services": SERVICE_NODE,  # each instance (Consul 1.7 has no filter here; later versions do)
    "/v1/health/node/": HEALTH_CHECK,
    "/v1/health/checks/": HEALTH_CHECK,
    "/v1/health/state/": HEALTH_CHECK,
    "/v1/health/service/": CHECK_SERVICE_NODE,
    "/v1/health/connect/": CHECK_SERVICE_NODE,
}
