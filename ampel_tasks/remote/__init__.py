"""Hosts, ssh and the runner: every command on a host (one connection each), local
processes, the registry tunnel, this machine's Docker engine and the private registry."""
