"""prune's decisions (pure): what is kept, what may go, and why; its reads of sizes
(a command and the parser of its output)."""
import subprocess

from ampel_tasks.facts import sizes
from ampel_tasks.operations.prune import image_files, image_tags, kept_manifests, source_trees, tree_glob


def m(version, result="ok", tag=None, src="/home/ampel/Ampel-v0.3", started="2026"):
    return {"version": version, "result": result, "image_file": f"/data/ampel/singularity/ampel-{tag or version}.simg",
            "ampel_src": src, "env": {"AMPEL_TAG": tag or version}, "started": started}


# newest first, as State.manifests() lists them
HISTORY = [
    m("v0.4.0", tag="v0.3.8", src="/home/ampel/Ampel-v0.4", started="6"),
    m("v0.3.9", result="failed: up", started="5"),
    m("v0.3.8", started="4"),
    m("v0.3.7", started="3"),
    m("v0.3.6", tag="v0.3.5", started="2"),
    m("v0.3.5", started="1"),
]


def test_kept_are_the_last_n_successes_and_always_the_running_one():
    assert [x["version"] for x in kept_manifests(HISTORY, "v0.4.0", 2)] == ["v0.4.0", "v0.3.8"]
    # rolled back to v0.3.5: it is kept whatever N says
    assert [x["version"] for x in kept_manifests(HISTORY, "v0.3.5", 1)] == ["v0.4.0", "v0.3.5"]


def test_image_files_of_kept_deployments_stay():
    keep = kept_manifests(HISTORY, "v0.4.0", 2)
    files = {"ampel-v0.3.8.simg": 120 << 20, "ampel-v0.3.7.simg": 121 << 20, "ampel-v0.3.5.simg": 118 << 20}
    got = {i.name: (i.remove, i.reason) for i in image_files("burst", files, keep, "v0.4.0")}
    assert got == {"ampel-v0.3.8.simg": (False, "running v0.4.0"),
                   "ampel-v0.3.7.simg": (True, "no kept deployment uses it"),
                   "ampel-v0.3.5.simg": (True, "no kept deployment uses it")}


def test_a_tree_with_work_is_kept_and_says_what_work():
    keep = kept_manifests(HISTORY, "v0.4.0", 1)
    trees = {"/home/ampel/Ampel-v0.4": 5 << 20, "/home/ampel/Ampel-v0.3": 4 << 20, "/home/ampel/Ampel-v0.2": 3 << 20}
    work = {"/home/ampel/Ampel-v0.3": "ampel-core: uncommitted deploy/production/dryrun.env"}
    got = {i.name: (i.remove, i.reason) for i in source_trees(trees, keep, "v0.4.0", work)}
    assert got["/home/ampel/Ampel-v0.4"] == (False, "running v0.4.0")
    assert got["/home/ampel/Ampel-v0.3"] == (False, "holds work: ampel-core: uncommitted deploy/production/dryrun.env")
    assert got["/home/ampel/Ampel-v0.2"][0] is True


def test_a_tag_sharing_a_kept_digest_is_kept_and_latest_always():
    keep = kept_manifests(HISTORY, "v0.4.0", 1)
    tags = {"v0.3.8": "sha256:a", "v0.4.0": "sha256:a", "v0.3.7": "sha256:b", "latest": "sha256:c"}
    got = {i.name: (i.remove, i.reason) for i in image_tags("registry tag", "registry", tags, keep, "v0.4.0")}
    assert got == {"v0.3.8": (False, "running v0.4.0"), "v0.4.0": (False, "same image as a kept tag"),
                   "v0.3.7": (True, "no kept deployment runs it"),
                   "latest": (False, "the previous image of the next build")}


def test_trees_are_globbed_only_when_the_last_part_alone_varies():
    assert tree_glob("/home/ampel/Ampel-{minor}") == "/home/ampel/Ampel-*"
    assert tree_glob("/scratch/ampel/Ampel-{version}/") == "/scratch/ampel/Ampel-*"
    assert tree_glob("/home/{version}/Ampel") is None
    assert tree_glob("/home/ampel/{minor}") is None, "every directory of ampel's home would match"
    assert tree_glob("/Ampel-{minor}") is None and tree_glob("/home/ampel/Ampel") is None


def test_sizes_from_stat_and_du():
    assert sizes.parse("125829120 ampel-v0.3.5.simg\n4096\t/home/ampel/Ampel-v0.3\n\n") == {
        "ampel-v0.3.5.simg": 125829120, "/home/ampel/Ampel-v0.3": 4096}


def test_the_size_commands_are_the_ones_sent():
    assert sizes.files_command("/data/ampel/singularity", "ampel-*.simg") == (
        "cd /data/ampel/singularity 2>/dev/null && for f in ampel-*.simg; do [ -f \"$f\" ] && stat -c '%s %n' \"$f\"; "
        "done; true")
    assert sizes.directories_command("'/data/ampel/mongo live'/*") == (
        "for d in '/data/ampel/mongo live'/*; do [ -d \"$d\" ] && du -sb \"$d\"; done; true")
    assert sizes.stat_command(["/tmp/a b.log", "/tmp/c"]) == "stat -c '%s %n' '/tmp/a b.log' /tmp/c 2>/dev/null"


def test_what_the_size_commands_print_is_what_the_parser_reads(tmp_path):
    """The commands run by a real shell over a real tree (names with a space too)."""
    (tmp_path / "ampel-v0.3.5.simg").write_bytes(b"x" * 1000)
    (tmp_path / "ampel-v0.3.6.simg").write_bytes(b"x" * 10)
    (tmp_path / "other.txt").write_bytes(b"x")
    (tmp_path / "Ampel v0.3").mkdir()
    run = lambda cmd: subprocess.run(["bash", "-c", cmd], capture_output=True, text=True).stdout
    assert sizes.parse(run(sizes.files_command(str(tmp_path), "ampel-*.simg"))) == {
        "ampel-v0.3.5.simg": 1000, "ampel-v0.3.6.simg": 10}
    assert set(sizes.parse(run(sizes.directories_command(f"'{tmp_path}'/Ampel*")))) == {f"{tmp_path}/Ampel v0.3"}
    assert sizes.parse(run(sizes.stat_command([str(tmp_path / "other.txt"), str(tmp_path / "gone")]))) == {
        str(tmp_path / "other.txt"): 1}
