"""ACLs (issue 14): tokens, policies, roles, the rule language, authorizers and token resolution."""
