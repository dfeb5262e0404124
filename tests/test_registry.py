"""Where a registry container answers, read from `docker inspect`, against the
configuration: the checks `push` and `doctor` make before using it."""
from types import SimpleNamespace

from ampel_tasks.remote.registry import check_container, listening

SETTINGS = SimpleNamespace(registry={"name": "registry", "address": "127.0.0.1", "port": 5000})


def host_network(*env):
    return {"HostConfig": {"NetworkMode": "host"}, "Config": {"Env": ["PATH=/bin", *env]}}


def published(ip, port):
    return {"HostConfig": {"NetworkMode": "bridge", "PortBindings": {"5000/tcp": [{"HostIp": ip, "HostPort": str(port)}]}},
            "Config": {"Env": []}}


def test_the_tools_own_registry_passes():
    attrs = host_network("REGISTRY_HTTP_ADDR=127.0.0.1:5000")
    assert listening(attrs) == [("127.0.0.1", 5000)]
    assert check_container(attrs, SETTINGS) is None
    assert check_container(published("127.0.0.1", 5000), SETTINGS) is None  # (warned about, moby#45610)


def test_one_answering_elsewhere_is_named_with_the_setting_to_change():
    other = SimpleNamespace(registry=dict(SETTINGS.registry, port=5999))
    problem = check_container(host_network("REGISTRY_HTTP_ADDR=127.0.0.1:5000"), other)
    assert problem.startswith("container registry: its registry listens on 127.0.0.1:5000, not on 127.0.0.1:5999")
    assert "set ampel.registry.port to 5000" in problem


def test_one_reachable_from_the_network_is_refused():
    assert listening(host_network()) == [("0.0.0.0", 5000)]  # the registry's default on the host's network
    assert "reachable from the network" in check_container(host_network(), SETTINGS)
    assert "serves the registry on 0.0.0.0:5000" in check_container(published("", 5000), SETTINGS)
    assert "reachable from the network" in check_container(host_network("REGISTRY_HTTP_ADDR=:5000"), SETTINGS)
