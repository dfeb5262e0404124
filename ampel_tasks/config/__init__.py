"""Settings and errors: the typed settings and their defaults, the one exception type,
what the operator sees (console), the help texts, the version's rules."""
