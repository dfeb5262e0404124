"""`--dry` with the production profile on a machine that reaches neither burst nor
transit nor a Docker engine still prints the whole runbook, in order."""

import pytest

from conftest import OFFLINE, tool



def test_production_dry_run_prints_the_runbook_offline():
    p = tool("deploy", "--version", "v0.3.5", "--dry", profile="config/production.yaml", env=OFFLINE, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    expected = [
        "hosts run singularity 2.x; every command there starts with: . /scratch/jvs/miniconda3/etc/profile.d/conda.sh; "
        "conda activate singularity-stack; export SINGULARITY_CACHEDIR=/data/ampel/singularity",
        "docker build",
        "docker run -d --network host -e REGISTRY_HTTP_ADDR=127.0.0.1:5000 -e REGISTRY_STORAGE_DELETE_ENABLED=true "
        "--restart=always --name registry registry:2",
        "docker tag ampel localhost:5000/ampel:v0.3.5",
        "docker push localhost:5000/ampel:v0.3.5",
        "-R 5000:127.0.0.1:5000",
        "[burst] (as ampel) $ cd /data/ampel/singularity && ",
        "SINGULARITY_NOHTTPS=1 SINGULARITY_CACHEDIR=/data/ampel/singularity singularity pull --name .ampel-v0.3.5.simg.part-",
        "[transit] (as ampel) $ cd /data/ampel/singularity && ",
        # one tree per minor series in ampel's home, made by ampel
        "[burst] (as ampel) $ singularity-stack volume init /data/ampel/singularity/ampel-v0.3.5.simg /Ampel "
        "/home/ampel/Ampel-v0.3\n",
        "MONGO_PATH, GROUP_NAME",
        "mkdir -p /data/ampel/mongo/live/v0.3.5",
        "/ampel-core/deploy/production/transit.yml names",
        "/ampel-core/deploy/production/burst.yml names",
        # transit's archive first: burst's writers connect to it
        "==> up transit: ",
        "[transit] (as ampel) $ cd /home/ampel/dryrun && ",
        "/home/ampel/Ampel-v0.3/ampel-core/deploy/up dryrun\n",
        "a query as the archive's read user",
        "==> up burst: ",
        "[burst] (as ampel) $ cd /home/ampel/dryrun && ",
        "/home/ampel/Ampel-v0.3/ampel-core/deploy/up dryrun\n",
    ]
    at = -1
    for text in expected:
        assert text in out, f"missing from the dry run: {text!r}\n{out}"
        # (the two pulls run at once: transit's lines may come first)
        found = out.find(text, 0 if text.startswith("[transit]") and "pull" in text else at + 1)
        assert found > at or text.startswith("[transit] (as ampel) $ cd /data"), f"out of order: {text!r}"
        at = max(at, found)
    assert "dry run of v0.3.5: nothing was changed" in out
    # and it says which facts it could not read
    assert "facts that could not be read" in p.stderr
    assert "Docker engine" in p.stderr and "connection refused" in p.stderr
    assert "Traceback" not in p.stderr


def test_installed_ampel_deploy_elsewhere_uses_the_file_name_singularity_stack_looks_for(tmp_path):
    """No invoke.yaml in reach: the package's own defaults must be right."""
    p = tool("deploy", "--version", "v0.3.5", "--dry", profile=None, env=OFFLINE, timeout=120, cwd=tmp_path,
             binary="ampel-deploy")
    assert p.returncode == 0, p.stderr
    assert "/data/ampel/singularity/ampel-v0.3.5.simg" in p.stdout
    assert "ampel_v0.3.5" not in p.stdout
    assert "singularity pull --name .ampel-v0.3.5.simg.part-" in p.stdout


def test_an_image_file_name_too_long_for_singularity_2_is_refused_before_anything():
    env = dict(OFFLINE, INVOKE_AMPEL_IMAGE_FILE="ampel-image-of-release-{version}.simg")
    p = tool("plan", "--version", "v0.3.5", "--dry", profile="config/production.yaml", env=env, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "ampel-image-of-release-v0.3.5.simg (34 characters) plus an instance name (8)" in p.stderr
    assert "limit of 32" in p.stderr


def test_the_example_runtime_profiles_change_the_command_forms():
    for name, pull, flavour in (
        ("runtime-singularity3", "singularity pull --nohttps .ampel-v0.3.5.simg.part-", "singularity 3.x"),
        ("runtime-apptainer", "apptainer pull --no-https .ampel-v0.3.5.sif.part-", "apptainer"),
    ):
        p = tool("deploy", "--version", "v0.3.5", "--dry", profile=f"config/examples/{name}.yaml", env=OFFLINE,
                 timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"hosts run {flavour};" in p.stdout and pull in p.stdout
    p = tool("plan", "--version", "v0.3.5", "--dry", profile="config/examples/layout-v0.4.0.yaml", env=OFFLINE)
    assert p.returncode == 0, p.stderr


def test_a_socket_that_is_not_a_docker_engine_is_not_called_a_stopped_dockerd(tmp_path):
    """Every Docker fault used to say "is dockerd running?"; a socket that answers, but
    not as Docker does, is named for what it is."""
    import socket
    import threading

    path = tmp_path / "not-docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        env = dict(OFFLINE, DOCKER_HOST=f"unix://{path}")
        p = tool("deploy", "--version", "v0.3.5", "--dry", profile="config/production.yaml", env=env, timeout=120)
    finally:
        server.close()
    assert p.returncode == 0, p.stderr
    assert f"unix://{path} does not answer as a Docker engine" in p.stderr, p.stderr
    assert "is dockerd running" not in p.stderr
    gone = tool("deploy", "--version", "v0.3.5", "--dry", profile="config/production.yaml", env=OFFLINE, timeout=120)
    assert "nothing listens at unix:///nonexistent/docker.sock; is dockerd running?" in gone.stderr, gone.stderr
