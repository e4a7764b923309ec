"""Local lab: several "hosts" on one machine (network namespaces on a bridge, one sshd per host)."""
