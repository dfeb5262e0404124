"""Disk space before a pull (pure): df's output, what the pull writes where, the refusal."""
import subprocess

from ampel_tasks.facts.space import TMP_DIR, df_command, fact_command, needs, parse_df, parse_fact, problems

DF = """\
@@df /data/ampel/singularity
/dev/vdb 1073741824 1006632960 67108864 94% /data
@@df ${SINGULARITY_TMPDIR:-/tmp}
tmpfs 8589934592 0 8589934592 0% /tmp
@@cached
sha256:aaa.tar.gz
sha256:cfg
"""
LAYERS = [("sha256:cfg", 2_000), ("sha256:aaa", 60 << 20), ("sha256:bbb", 40 << 20)]


def test_df_and_the_cached_layers_are_read():
    df, cached = parse_fact(DF)
    assert df == {"/data/ampel/singularity": ("/data", 67108864), TMP_DIR: ("/tmp", 8589934592)}
    assert cached == {"sha256:aaa", "sha256:cfg"}


def test_a_pull_that_cannot_fit_names_the_filesystem_and_the_numbers():
    df, cached = parse_fact(DF)
    per_mount = needs(LAYERS, cached, 250 << 20, "/data/ampel/singularity", TMP_DIR, df)
    assert per_mount["/data"]["need"] == (40 << 20) + (100 << 20) + 2_000  # missing layers + the image file
    assert per_mount["/tmp"]["need"] == 250 << 20
    found = problems("burst", per_mount)
    assert found == ["on burst: /data/ampel/singularity (filesystem /data) has 64.0 MiB free; the pull needs "
                     "140.0 MiB there (40.0 MiB layers, 100.0 MiB image file); free space first (`invoke prune`)"]


def test_one_filesystem_for_everything_adds_the_needs_up():
    df = {"/data/ampel/singularity": ("/", 300 << 20), TMP_DIR: ("/", 300 << 20)}
    per_mount = needs(LAYERS, set(), 150 << 20, "/data/ampel/singularity", TMP_DIR, df)
    assert list(per_mount) == ["/"] and problems("transit", per_mount)
    assert not problems("transit", needs(LAYERS, set(), 50 << 20, "/data/ampel/singularity", TMP_DIR, df))


def test_the_command_measures_the_nearest_existing_parent(tmp_path):
    (tmp_path / "data").mkdir()
    out = subprocess.run(["sh", "-c", fact_command(str(tmp_path / "data" / "not-yet" / "singularity"))],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}).stdout
    df, cached = parse_fact(out)
    assert set(df) == {str(tmp_path / "data" / "not-yet" / "singularity"), TMP_DIR} and cached == set()
    assert all(free > 0 for _, free in df.values())
    assert "@@df" in df_command(["/x"]) and parse_df("") == {}
