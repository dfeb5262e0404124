"""A Docker engine that cannot be used is named by its cause."""
import requests

from ampel_tasks.remote.dockerengine import engine_fault

WHERE = "unix:///var/run/docker.sock"


def wrapped(inner):
    try:
        try:
            raise inner
        except OSError as e:
            raise requests.exceptions.ConnectionError(("Connection aborted.", e)) from e
    except requests.exceptions.ConnectionError as outer:
        return outer


def test_each_cause_has_its_own_line():
    assert engine_fault(WHERE, wrapped(PermissionError(13, "Permission denied"))).startswith(
        "permission denied on the Docker engine at unix:///var/run/docker.sock: run as a member of the docker group")
    assert engine_fault(WHERE, wrapped(FileNotFoundError(2, "No such file or directory"))) == \
        "nothing listens at unix:///var/run/docker.sock; is dockerd running?"
    assert engine_fault(WHERE, wrapped(ConnectionRefusedError(111, "Connection refused"))).endswith("is dockerd running?")
    odd = engine_fault(WHERE, ValueError("invalid literal for int() with base 16"))
    assert odd == f"{WHERE} does not answer as a Docker engine (invalid literal for int() with base 16); check DOCKER_HOST"
