"""What a run prints and what its run log keeps (pure: no host, no engine)."""
from __future__ import annotations

import os

import pytest

from ampel_tasks.config import console
from ampel_tasks.flow.executor import log_name
from ampel_tasks.remote.registrypush import PushProgress
from ampel_tasks.steps.pull import _pulled_bytes, pull_failure


@pytest.fixture
def log(tmp_path):
    path = str(tmp_path / "runs" / "v0.3.6.20261127T181500Z.log")
    assert console.open_log(path) == path
    yield path
    console.close_log()
    console.verbose = False
    console._secrets.clear()


def test_details_go_to_the_log_only_off_a_terminal(log, capsys):
    console.step("pull burst", "localhost:5000/ampel:v0.3.6 -> /data/ampel/singularity/ampel-v0.3.6.simg")
    console.detail("Docker image path: localhost:5000/ampel:v0.3.6")
    console.detail("Exploding layer: sha256:1234.tar.gz")
    printed = capsys.readouterr().out
    assert "==> pull burst" in printed
    assert "Exploding layer" not in printed
    kept = open(log).read()
    assert "==> pull burst" in kept and "Exploding layer: sha256:1234.tar.gz" in kept
    assert oct(os.stat(log).st_mode & 0o777) == "0o600"


def test_verbose_prints_every_detail(log, capsys):
    console.verbose = True
    console.detail("Step 3/9 : RUN conda env update")
    assert "Step 3/9 : RUN conda env update" in capsys.readouterr().out


def test_secrets_are_masked_in_the_log_too(log, capsys):
    console.register_secret("kafka-p4ssw0rd")
    console.detail("connecting with kafka-p4ssw0rd")
    console.out("password kafka-p4ssw0rd")
    console.logged("error: auth kafka-p4ssw0rd refused")
    assert "kafka-p4ssw0rd" not in capsys.readouterr().out
    kept = open(log).read()
    assert "kafka-p4ssw0rd" not in kept and kept.count("*****") == 3


def test_an_unwritable_log_folder_is_a_warning_not_a_failure(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert console.open_log(str(blocker / "runs" / "x.log")) is None
    assert "warning: no run log" in capsys.readouterr().err
    console.out("still printed")
    assert "still printed" in capsys.readouterr().out


def test_the_summary_table_aligns_columns(capsys):
    console.table(("step", "host", "result", "seconds"),
                  [("image", "local", "skipped", "0.3"), ("pull", "transit", "changed", "21.4")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "host", "result", "seconds"]
    assert lines[2].split() == ["pull", "transit", "changed", "21.4"]
    assert len({line.index(line.split()[2]) for line in lines}) == 1  # the result column lines up


def test_push_progress_counts_bytes_of_pushed_layers_only():
    t = [0.0]
    p = PushProgress(clock=lambda: t[0])
    p.feed({"status": "The push refers to repository [127.0.0.1:5000/ampel]"})
    p.feed({"status": "Preparing", "id": "aaa"})
    p.feed({"status": "Layer already exists", "id": "bbb"})
    for current in (2**20, 5 * 2**20, 10 * 2**20):
        t[0] += 1.0
        line = p.feed({"status": "Pushing", "id": "aaa", "progressDetail": {"current": current, "total": 10 * 2**20}})
    assert line == "push: 10.0 MiB sent (3.3 MiB/s)"
    p.feed({"status": "Pushed", "id": "aaa"})
    assert p.summary() == "pushed 1 layer(s), 10.0 MiB in 3 s (3.3 MiB/s); 1 already in the registry"


def test_push_progress_lines_are_rate_limited():
    p = PushProgress(clock=lambda: 5.0)
    first = p.feed({"status": "Pushing", "id": "a", "progressDetail": {"current": 1}})
    second = p.feed({"status": "Pushing", "id": "a", "progressDetail": {"current": 2}})
    assert first and second is None


def test_pulled_bytes_come_from_the_last_line_of_the_pull():
    assert _pulled_bytes("Docker image path: x\nBuilding image...\npulled-bytes 128974848\n") == 128974848
    assert _pulled_bytes("Building image...\n") is None


def test_the_run_log_is_named_like_the_manifest():
    assert log_name("v0.3.6", ["plan", "deploy"], "2026-11-27T18:15:00Z") == "v0.3.6.20261127T181500Z.log"
    assert log_name(None, ["rollback"], "2026-11-27T18:15:00Z") == "rollback.20261127T181500Z.log"


def test_a_failed_pull_is_explained_by_singularitys_first_error_line():
    full = ("Downloading layer: sha256:aa\n"
            "ERROR Error writing to /data/ampel/singularity/docker/sha256:bb.part-7: [Errno 28] No space left on "
            "device exiting\n"
            "ERROR Error downloading http://localhost:5000/v2/ampel/blobs/sha256:bb. Do you have permission to write "
            "to /data/ampel/singularity/docker?\n")
    assert pull_failure(full).startswith("Error writing to ") and "No space left on device" in pull_failure(full)
    assert pull_failure("ERROR: Image file exists, not overwriting.\n") == "Image file exists, not overwriting."
    assert pull_failure("curl: (7) Failed to connect\n") == "curl: (7) Failed to connect"
    assert pull_failure("") == "no output"


def test_a_trace_line_masks_a_secret_cut_at_its_end_and_is_nothing_untraced(capsys, monkeypatch):
    monkeypatch.setattr(console, "_secrets", set())  # (this test's secret goes with it)
    console.register_secret("kafka-p4ssw0rd")
    command = "x" * 140 + " kafka-p4ssw0rd"  # (the secret spans the 150th character)
    monkeypatch.delenv("AMPEL_TASKS_TRACE", raising=False)
    console.trace("[burst] 0.10s exit 0", command)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("AMPEL_TASKS_TRACE", "1")
    console.trace("[burst] 0.10s exit 0", command)
    err = capsys.readouterr().err
    assert err == f"trace: [burst] 0.10s exit 0: {'x' * 140} *****\n" and "kafka" not in err
