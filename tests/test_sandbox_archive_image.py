"""transit's archive image, postgres:10.3, built from Debian's PostgreSQL (no hub): a
real server whose entrypoint does what the official one of the 10.3 era did, run as
a user who is not root (as under Singularity, with the host's passwd)."""
import pwd
import subprocess
import time
import uuid

import pytest

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"
IMAGE = "postgres:10.3"


def docker(*args, check=True):
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {p.stderr}")
    return p


class Archive:
    """One container of the image on a data directory and an initdb directory owned by ampel."""

    def __init__(self, root):
        self.data, self.init = root / "data", root / "initdb"
        self.data.mkdir()
        self.init.mkdir()
        root.chmod(0o755)
        self.user = pwd.getpwnam("ampel")
        for d in (self.data, self.init):
            subprocess.run(["chown", f"{self.user.pw_uid}:{self.user.pw_gid}", str(d)], check=True)
        self.name = f"archive-test-{uuid.uuid4().hex[:8]}"
        self.secret = root / "archive-root-password.txt"
        self.secret.write_text("root-s3cr3t\n")

    def start(self, wait=True):
        docker("rm", "-f", self.name, check=False)
        docker("run", "-d", "--name", self.name, "--network", "none", "--user", f"{self.user.pw_uid}:{self.user.pw_gid}",
               "-v", "/etc/passwd:/etc/passwd:ro", "-v", "/etc/group:/etc/group:ro",
               "-v", f"{self.data}:/var/lib/postgresql/data", "-v", f"{self.init}:/docker-entrypoint-initdb.d:ro",
               "-v", f"{self.secret}:/run/secrets/archive-root-password:ro", "-e", "POSTGRES_USER=ampel",
               "-e", "POSTGRES_DB=ztfarchive", "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/archive-root-password",
               IMAGE)
        return self.wait() if wait else None

    def wait(self):
        for _ in range(120):
            logs = self.logs()
            # an initialisation starts (and stops) a server of its own first
            if "init process complete" in logs:
                tail = logs.split("init process complete")[-1]
            else:
                tail = "" if "waiting for server to start" in logs else logs
            if "database system is ready to accept connections" in tail:
                return logs
            if docker("inspect", "-f", "{{.State.Running}}", self.name).stdout.strip() != "true":
                return self.logs()  # (read again: it may have ended, writing its last lines, since `logs`)
            time.sleep(0.25)
        raise AssertionError(f"{IMAGE} did not start:\n{self.logs()}")

    def logs(self):
        p = docker("logs", self.name, check=False)
        return p.stdout + p.stderr

    def sql(self, query, user="ampel"):
        p = docker("exec", self.name, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "/var/run/postgresql",
                   "-U", user, "ztfarchive", "-c", query, check=False)
        return p.stdout.strip() if p.returncode == 0 else f"ERROR {p.stderr.strip()}"

    def remove(self):
        docker("rm", "-f", self.name, check=False)


@pytest.fixture
def archive(sandbox, tmp_path):
    a = Archive(tmp_path)
    yield a
    a.remove()


def test_an_empty_data_directory_is_initialised_once_in_glob_order(archive):
    (archive.init / "01_schema.sql").write_text(
        "CREATE TABLE versions (alert_version FLOAT PRIMARY KEY);\nINSERT INTO versions VALUES (1.8);\n")
    (archive.init / "02_users.sh").write_text(
        'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" '
        "-c \"CREATE USER \\\"ampel-readonly\\\" PASSWORD 'r'; GRANT SELECT ON versions TO \\\"ampel-readonly\\\"\"\n"
        "SOURCED_BY_THE_ENTRYPOINT=yes\n")
    (archive.init / "03_after.sql").write_text("INSERT INTO versions VALUES (2.0);\n")
    (archive.init / "notes.txt").write_text("not run\n")
    logs = archive.start()
    assert "PostgreSQL init process complete" in logs, logs
    assert logs.index("01_schema.sql") < logs.index("02_users.sh") < logs.index("03_after.sql")
    assert "ignoring /docker-entrypoint-initdb.d/notes.txt" in logs
    assert archive.sql("SELECT alert_version FROM versions ORDER BY 1") == "1.8\n2"
    assert archive.sql("SELECT count(*) FROM versions", user="ampel-readonly") == "2"
    # POSTGRES_USER is the superuser, its password (from the _FILE) stored as md5, as 10.3 did
    assert archive.sql("SELECT rolsuper, rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'ampel'") == "t|t"
    hba = (archive.data / "pg_hba.conf").read_text().splitlines()
    assert hba[-1] == "host all all all md5"
    assert archive.sql("SHOW server_version").split(".")[0].isdigit()
    # the server runs as the caller (ampel), who owns the data
    assert (archive.data / "PG_VERSION").stat().st_uid == archive.user.pw_uid
    # an existing data directory: nothing is initialised or run again
    (archive.init / "04_new.sql").write_text("INSERT INTO versions VALUES (3.0);\n")
    logs = archive.start()
    assert "04_new.sql" not in logs and "init process complete" not in logs
    assert archive.sql("SELECT count(*) FROM versions") == "2"


def test_a_failing_initdb_script_stops_the_start(archive):
    (archive.init / "01_schema.sql").write_text("CREATE TABLE a (x int);\nCREATE TABEL b (x int);\nCREATE TABLE c (x int);\n")
    (archive.init / "02_never.sql").write_text("CREATE TABLE d (x int);\n")
    logs = archive.start()
    assert docker("inspect", "-f", "{{.State.ExitCode}}", archive.name).stdout.strip() != "0", logs
    assert 'syntax error at or near "TABEL"' in logs
    assert "02_never.sql" not in logs and "ready for start up" not in logs
