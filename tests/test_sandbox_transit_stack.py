"""transit's own stack on the sandbox, started as the runbook's operator starts it
(`deploy/up dryrun` as ampel on transit, from a tree of the deployed image): the
archive is a real PostgreSQL in the stand-in Singularity, running as ampel, whose
entrypoint makes the v0.3.5 schema (1.8 and the migrations to 3.0) and the read and
write users on an empty ARCHIVE_PATH and nothing on an existing one; graphite's
stand-in takes metric lines. The tool does not deploy transit yet: this is the site."""
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import on

pytestmark = pytest.mark.sandbox
TRANSIT = Path("/var/lib/ampel-sandbox/hosts/transit")
ADDRESS = "10.77.2.2"  # transit's, in its network namespace
SRC, DRYRUN = "/home/ampel/Ampel-v0.3", "/home/ampel/dryrun"
SECRETS = ("archive-root-password", "archive-read-password", "archive-write-password", "desycloud-password")


def psql(user, password, query):
    p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", query,
                        f"postgresql://{user}:{password}@{ADDRESS}:5432/ztfarchive"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip() if p.returncode == 0 else f"ERROR {p.stderr.strip()}"


def up_on_transit():
    # (singularity-stack 0.2.2 waits hours for a port that never opens: a bounded wait)
    p = on("transit", f"cd {DRYRUN} && env PYTHONUNBUFFERED=1 timeout 240 {SRC}/ampel-core/deploy/up dryrun", timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


@pytest.fixture
def transit_site(deployed):
    """transit as the operator prepares it by hand today: AMPEL_SRC from the image, the
    dryrun directory with transit's four secrets; all of it removed afterwards."""
    secrets = deployed["operator"]["secrets"]
    made = [TRANSIT / SRC.lstrip("/"), TRANSIT / DRYRUN.lstrip("/"), TRANSIT / "data/ampel/archive/dryrun"]
    assert not any(p.exists() and any(p.iterdir()) for p in made[:2]), "transit is not empty: the tool deploys there now?"
    p = on("transit", f"singularity-stack volume init /data/ampel/singularity/ampel-v0.3.5.simg /Ampel {SRC}")
    assert p.returncode == 0, p.stderr
    writes = "; ".join(f"printf '%s\\n' {secrets[n]} > {DRYRUN}/secrets/{n}.txt" for n in SECRETS)
    p = on("transit", f"umask 077; mkdir -p {DRYRUN}/secrets && {writes}")
    assert p.returncode == 0, p.stderr
    try:
        yield secrets
    finally:
        on("transit", "singularity-stack rm transit")
        for path in made:
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
        for path in made[1:]:  # the site's own directories, empty, as scripts/sandbox makes them
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["chown", "ampel:ampel", str(path)], check=False)


def test_transit_runs_the_archive_as_a_real_postgresql_and_graphite(transit_site):
    secrets = transit_site
    out = up_on_transit()
    assert "connected to transit.zeuthen.desy.de:5432" in out and "connected to transit.zeuthen.desy.de:2003" in out
    write, read = secrets["archive-write-password"], secrets["archive-read-password"]
    # the schema of v0.3.5: 1.8, then each migration recorded its version
    assert psql("ampel-client", write, "SELECT alert_version FROM versions ORDER BY version_id") == "1.8\n1.9\n2.0\n3.0"
    assert psql("ampel-client", write, "SELECT count(*) FROM information_schema.columns "
                                       "WHERE table_name = 'candidate'") == "27"
    # the write user writes; the read user reads and may not write; a wrong password gets nothing
    candid = uuid.uuid4().int % 10**12
    assert psql("ampel-client", write, f"INSERT INTO alert (objectId, candid, programid, schemavsn) "
                                       f"VALUES ('ZTF18sandbox', {candid}, 1, '3.0') RETURNING candid") == str(candid)
    assert psql("ampel-readonly", read, f"SELECT objectId FROM alert WHERE candid = {candid}") == "ZTF18sandbox"
    assert "permission denied for table alert" in psql("ampel-readonly", read, "DELETE FROM alert")
    assert "password authentication failed" in psql("ampel-client", "wrong", "SELECT 1")
    # the server runs as ampel (as under Singularity), its data owned by ampel on transit
    owner = subprocess.run(["stat", "-c", "%U", str(TRANSIT / "data/ampel/archive/dryrun/PG_VERSION")],
                           capture_output=True, text=True).stdout.strip()
    assert owner == "ampel"
    with socket.create_connection((ADDRESS, 2003), timeout=5) as s:
        s.sendall(b"ampel.sandbox.test 1 1700000000\n")
    # deploy/up again restarts postgres on the existing data: nothing initialised again, nothing lost
    out = up_on_transit()
    assert psql("ampel-readonly", read, f"SELECT count(*) FROM alert WHERE candid = {candid}") == "1"
    assert psql("ampel-readonly", read, "SELECT count(*) FROM versions") == "4"
    logs = on("transit", "singularity-stack logs transit archive").stdout
    assert logs.count("PostgreSQL init process complete") == 0, "the second start initialised again"
