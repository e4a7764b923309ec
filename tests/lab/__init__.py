"""Lab tests: network-namespace hosts with real sshd (need root)."""
