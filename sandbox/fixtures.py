"""The sandbox's GitHub content: small repos shaped like AmpelProject's of July 2018.

Ampel-core carries `deploy/` in the layout of Ampel-core v0.3.5 (written here for
the sandbox, from what that layout does): `deploy/up CONFIG` taking the machine
from the hostname and the env file through `env $(sed ... | xargs echo)`,
`production/dryrun.env` with values that reference other variables,
`production/burst.yml` (compose 3.4, services in the order catalog, mongo, stats,
alertprocessor, followup, t2-controller, t3-controller, list-form commands,
`depends_on` naming services that are not in the file, `*_FILE` secrets), and
`docker-images/devel/` whose Dockerfile ADDs `deploy-keys/id_rsa*`, generates the
ssh config from the key names in a RUN, and clones through aliases that differ
from the directories (github-ampel -> Ampel-core -> /Ampel/ampel-core).
"""
import os
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

IMAGE_DIR = "deploy/docker-images/devel"
BASE_IMAGE = "ampel-sandbox-base:bookworm"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ampel Bot", "GIT_AUTHOR_EMAIL": "ampel@sandbox.invalid",
    "GIT_COMMITTER_NAME": "Ampel Bot", "GIT_COMMITTER_EMAIL": "ampel@sandbox.invalid",
}


@dataclass(frozen=True)
class Repo:
    org: str
    name: str     # the repository on the git server
    alias: str    # the deploy key's name: deploy-keys/id_rsa.<alias>, Host github-<alias>
    dir: str      # where the image holds it: /Ampel/<dir>
    in_image: bool


REPOS = [
    Repo("AmpelProject", "Ampel-core", "ampel", "ampel-core", True),
    Repo("AmpelProject", "Ampel-base", "ampel-base", "ampel-base", True),
    Repo("AmpelProject", "ampel-contrib-hu", "ampel-contrib-hu", "ampel-contrib-hu", True),
    Repo("AmpelProject", "ampel-contrib-foo", "ampel-contrib-foo", "ampel-contrib-foo", False),
]
CORE = REPOS[0]


def _setup_py(name, packages, requires, scripts, version="0.3.5"):
    return textwrap.dedent(f"""\
        from setuptools import setup

        setup(
            name={name!r},
            version={version!r},
            packages={packages!r},
            install_requires={requires!r},
            entry_points={{
                "console_scripts": {scripts!r},
            }},
        )
        """)


SERVICES_PY = '''\
"""Ampel services as the dryrun stack runs them (sandbox fixture).

singularity-stack 0.2.2 gives each process only its service's environment, with
the *_FILE secrets already turned into values. Each service checks its
credentials, says what it does, and writes what it processes into the live
database (the mongo service) so a test can see which database it writes.

The alert processors also archive every alert they process in the archive on
transit (PostgreSQL, as ampel-client), as the real writer does: the archive is
opened once at start and its schema version read; an alert of a newer schema is
refused (ValueError: the process ends, the nanny starts it again); an alert is
counted as processed only once archived (Kafka's offset is stored then), and a
lost connection is opened again and the same alerts written again, so none is
lost while the archive restarts. `stats` reads the archive as ampel-readonly.
"""
import argparse
import json
import os
import random
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RELEASE = "0.3.5"
ALERT_SCHEMA = "3.0"  # the avro schema of the alerts this release receives


def _credentials(*names):
    for name in names:
        if not os.environ.get(name):
            print(f"ERROR: {name} is not set; no credentials", flush=True)
            sys.exit(2)


def _record(doc):
    host = os.environ.get("MONGO_HOSTNAME", "mongo")
    port = int(os.environ.get("MONGO_PORT", "27017"))
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall((json.dumps(doc) + "\\n").encode())
    except OSError as exc:
        print(f"WARNING: cannot reach the live database at {host}:{port}: {exc}", flush=True)


def _serve(name, secrets, group=None, units=False, archive=None):
    _credentials(*secrets)
    print(f"{name} {RELEASE} starting (pid {os.getpid()}, writer {WRITER})" + (f" in consumer group {group}" if group else ""),
          flush=True)
    if units:
        print(f"{name} {RELEASE} units from {', '.join(_units()) or 'no contrib repo'}", flush=True)
    if os.path.exists(os.path.join(HERE, "FAULT")):
        print(f"ERROR {name}: cannot reach the database", flush=True)
        raise RuntimeError("fault injected by the sandbox")
    if os.path.exists(os.path.join(HERE, "CRASH")):
        sys.exit(3)  # dies without a word: only the nanny's lines tell
    db = Archive(*archive) if archive else None
    if group and os.path.exists(os.path.join(HERE, "LOAD")):
        _load(int(open(os.path.join(HERE, "LOAD")).read().split()[0]))
    beat = 0
    while True:
        time.sleep(5)
        beat += 1
        if group:
            db.write([_alert(beat * 7 + i) for i in range(-6, 1)])
            print(f"{name} {RELEASE} processed {beat * 7} alerts, archived {beat * 7}", flush=True)
            _record({"service": name, "release": RELEASE, "group": group, "pid": os.getpid(), "alerts": beat * 7})
        elif db:
            print(f"{name} {RELEASE} the archive holds {db.count()} alerts", flush=True)
        else:
            print(f"{name} {RELEASE} processed {beat * 7} alerts", flush=True)


def _version(text):
    return tuple(int(x) for x in text.split("."))


# this process's own number (each replica's pid is 2 in its own PID namespace): its
# alerts are numbered 1, 2, ... under it, so a test sees a missing one as a gap
WRITER = random.randrange(10 ** 10, 10 ** 11)


def _stream_schema():
    """The avro schema of the alerts the stream delivers now: ALERT_SCHEMA, or what a
    test's STREAM file in AMPEL_SRC (outside every repo) says: alerts of a newer schema
    arriving from the stream."""
    try:
        return open(os.path.join(HERE, "..", "..", "..", "STREAM")).read().strip() or ALERT_SCHEMA
    except OSError:
        return ALERT_SCHEMA


def _alert(seq):
    """Alert number `seq` of this writer (candid unique per writer and number)."""
    return {"objectId": f"ZTF18{WRITER}", "candid": WRITER * 10 ** 7 + seq, "programid": 1, "schemavsn": _stream_schema(),
            "jd": 2458000.5 + seq / 1e4, "fid": 1 + seq % 2, "ra": (seq * 7.1) % 360, "dec": (seq * 3.3) % 90 - 45}


class Archive:
    """The archive on transit, as the writer (or reader) opens it: once at start."""

    def __init__(self, user_var, password_var):
        self.user, self.password = os.environ[user_var], os.environ[password_var]
        self.where = f"{os.environ.get('ARCHIVE_HOST', 'transit')}:{os.environ.get('ARCHIVE_PORT', '5432')}"
        self.conn = self._open()
        cur = self.conn.cursor()
        cur.execute("SELECT alert_version FROM versions ORDER BY version_id DESC LIMIT 1")
        self.version = cur.fetchone()[0]
        self.conn.commit()
        print(f"archive {self.where}/ztfarchive opened as {self.user}: schema {self.version}", flush=True)

    def _open(self):
        import psycopg2

        host, port = self.where.rsplit(":", 1)
        try:
            return psycopg2.connect(host=host, port=int(port), dbname="ztfarchive", user=self.user,
                                    password=self.password, connect_timeout=5)
        except psycopg2.OperationalError as exc:
            print(f"ERROR: cannot open the archive at {self.where} as {self.user}: {str(exc).strip()}", flush=True)
            sys.exit(1)

    def write(self, alerts):
        """Every alert archived before it counts as processed; a lost connection is
        opened again and the same alerts written again (duplicates refused by UNIQUE)."""
        import psycopg2

        for a in alerts:
            if _version(a["schemavsn"]) > _version(self.version):
                raise ValueError(f"alert schema {a['schemavsn']} is newer than the archive's {self.version}")
        while True:
            try:
                cur = self.conn.cursor()
                for a in alerts:
                    cur.execute("INSERT INTO alert (objectId, candid, programid, schemavsn, ingestion_time) VALUES "
                                "(%(objectId)s, %(candid)s, %(programid)s, %(schemavsn)s, %(t)s) "
                                "ON CONFLICT DO NOTHING", dict(a, t=int(time.time())))
                    cur.execute("INSERT INTO candidate (candid, programid, jd, fid, ra, dec) VALUES "
                                "(%(candid)s, %(programid)s, %(jd)s, %(fid)s, %(ra)s, %(dec)s) ON CONFLICT DO NOTHING", a)
                self.conn.commit()
                return
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                print(f"WARNING: archive connection lost ({str(exc).strip().splitlines()[0]}); opening it again",
                      flush=True)
                time.sleep(1)
                self.conn = self._reopen()

    def _reopen(self):
        import psycopg2

        host, port = self.where.rsplit(":", 1)
        while True:
            try:
                return psycopg2.connect(host=host, port=int(port), dbname="ztfarchive", user=self.user,
                                        password=self.password, connect_timeout=5)
            except psycopg2.OperationalError:
                time.sleep(1)

    def count(self):
        import psycopg2

        try:
            cur = self.conn.cursor()
            cur.execute("SELECT count(*) FROM alert")
            n = cur.fetchone()[0]
            self.conn.commit()
            return n
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            print(f"WARNING: archive connection lost ({str(exc).strip().splitlines()[0]}); opening it again",
                  flush=True)
            self.conn = self._reopen()
            return self.count()


def _load(seconds):
    """LOAD (a test's): once GO exists, 1,000 numbered lines a second for `seconds`."""
    while not os.path.exists(os.path.join(HERE, "GO")):
        time.sleep(0.1)
    t0, n = time.time(), 0
    while n < seconds * 1000:
        batch = min(100, seconds * 1000 - n)
        sys.stdout.write("".join(f"load {os.getpid()} {n + i}\\n" for i in range(batch)))
        sys.stdout.flush()
        n += batch
        time.sleep(max(0.0, t0 + n / 1000 - time.time()))


def _units():
    """The contrib repos whose units load: each installed ampel-contrib-* imported
    from /Ampel (the mounted host copies); one that fails to import is an error."""
    import importlib
    import importlib.metadata as md

    found = []
    for dist in md.distributions():
        name = dist.metadata["Name"] or ""
        if name.startswith("ampel-contrib-"):
            try:
                importlib.import_module(name.replace("-", "_"))
                found.append(name)
            except ImportError as exc:
                print(f"ERROR: units of {name} do not load: {exc}", flush=True)
    return sorted(found)


def alertprocessor():
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--group", required=True)
    a = p.parse_args()
    _serve("AlertProcessor", ["MONGO_WRITER_PASSWORD", "ARCHIVE_WRITER_PASSWORD"], group=a.group, units=True,
           archive=("ARCHIVE_WRITER_USERNAME", "ARCHIVE_WRITER_PASSWORD"))


def statspublisher():
    _serve("StatsPublisher", ["MONGO_LOGGER_PASSWORD", "ARCHIVE_READER_PASSWORD"],
           archive=("ARCHIVE_READER_USERNAME", "ARCHIVE_READER_PASSWORD"))


def followup():
    _serve("Followup", ["MONGO_WRITER_PASSWORD"])


def t2():
    _serve("T2Controller", ["MONGO_WRITER_PASSWORD"])


def t3():
    _serve("T3Controller", ["EXTCATS_WRITER_PASSWORD"])
'''

UP_SCRIPT = r'''#!/bin/bash
# deploy/up CONFIG -- sandbox fixture with the behaviour of Ampel-core v0.3.5's
# deploy/up (written for the sandbox): CONFIG names production/CONFIG.env; only
# `dryrun` acts; the stack is this machine's short hostname; the env file's
# lines, comments stripped, become singularity-stack's environment; no `set -e`,
# so the exit status is that of the final `list`. Run it where `secrets` is.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$here/production/$1.env"

if [[ ! -e "$conf" ]]; then
	known=$(ls "$here"/production/*.env | xargs -n1 basename | sed 's/\.env$//' | xargs echo)
	echo "Configuration \"$1\" does not exist. Choose one of: ($known)"
	exit 1
fi

stack_env() {
	env $(sed -e 's!#.*!!' "$conf" | xargs echo) "$@"
}

[[ "$1" == dryrun ]] || exit 0
stack=$(hostname | cut -d. -f1)
singularity-stack rm "$stack"
sleep 1
[[ "$stack" == burst ]] && echo 'not clearing anything'
stack_env singularity-stack deploy -c "$here/production/$stack.yml" "$stack"
singularity-stack list
'''

DRYRUN_ENV = """\
AMPEL_TAG=v0.3.0
AMPEL_SRC=/home/ampel/Ampel-v0.3

ARCHIVE_HOST=transit
ARCHIVE_PORT=5432
ARCHIVE_PATH=/data/ampel/archive/dryrun
ARCHIVE_INITDB_PATH=$AMPEL_SRC/ampel-core/deploy/production/initdb/archive

GRAPHITE_HOST=transit
GRAPHITE_PORT=2003
METRICS_DIR=/data/ampel/metrics

# in the sandbox the services reach the databases by their service names
MONGO_HOST=mongo
MONGO_PORT=27017
MONGO_PATH=/data/ampel/mongo/live/v0.3.3
MONGO_INITDB_PATH=$AMPEL_SRC/ampel-core/deploy/production/initdb/mongo

NUM_STREAMS=16
GROUP_NAME=ampel-v0.3.3

CATSHTM_PATH=/data/ampel/catalogs/catsHTM2
CATALOG_HOST=catalog
CATALOG_PORT=27018
CATALOG_PATH=/data/ampel/catalogs/dryrun
CATALOG_INITDB_PATH=$AMPEL_SRC/ampel-core/deploy/production/initdb/catalog
CATALOG_MONGODUMP_PATH=/data/ampel/catalogs/mongodumps
"""

RESTART = """\
    deploy:
      restart_policy:
        condition: any
        delay: 10s
"""


# transit's address in the sandbox (scripts/sandbox checks it): the site's resolver knows
# `transit`; the sandbox has no DNS, so the services that reach the archive get it as an
# extra host, which singularity-stack writes into the /etc/hosts it binds
TRANSIT_ADDRESS = "10.77.2.2"
EXTRA_HOSTS = f'    extra_hosts:\n      - "transit:{TRANSIT_ADDRESS}"\n'


def _ampel_service(name, command, volumes, secrets, env, depends, extra=""):
    hosts = EXTRA_HOSTS if any(k.startswith("ARCHIVE_") for k in env) else ""
    return (
        f"  {name}:\n    image: ampel:$AMPEL_TAG\n    command: {command}\n{hosts}    volumes:\n{volumes}"
        "    secrets:\n" + "".join(f"      - {s}\n" for s in secrets)
        + "    environment:\n      TINI_SUBREAPER: 1\n      MONGO_HOSTNAME: $MONGO_HOST\n      MONGO_PORT: $MONGO_PORT\n"
        + "".join(f"      {k}: {v}\n" for k, v in env.items())
        + (extra or RESTART) + "    depends_on:\n" + "".join(f"      - {d}\n" for d in depends)
    )


VOLUME_SRC = "      - type: volume\n        source: $AMPEL_SRC\n        target: /Ampel\n"
BIND_SRC = "      - $AMPEL_SRC:/Ampel\n"
CATSHTM = "      - $CATSHTM_PATH:/catalogs/catsHTM\n"
SECRET = "/run/secrets/"
ARCHIVE_AT = {"ARCHIVE_HOST": "$ARCHIVE_HOST", "ARCHIVE_PORT": "$ARCHIVE_PORT"}


def burst_yml():
    mongo_env = ("      MONGO_INITDB_ROOT_USERNAME: root\n"
                 f"      MONGO_INITDB_ROOT_PASSWORD_FILE: {SECRET}mongo-root-password\n")
    head = textwrap.dedent("""\
        version: '3.4'
        services:
          catalog:
            # the catalog starts first: it may need port 27017 to initialize
            image: mongo:3.6
            command: ["mongod", "--port", "$CATALOG_PORT"]
            volumes:
              - $CATALOG_PATH:/data/db
              - $CATALOG_INITDB_PATH:/docker-entrypoint-initdb.d/
              - $CATALOG_MONGODUMP_PATH:/mnt
            ports:
              - "$CATALOG_PORT:$CATALOG_PORT"
            secrets:
              - mongo-root-password
              - catalog-read-password
            environment:
        """) + mongo_env + RESTART + (
        "  mongo:\n"
        "    image: mongo:3.6\n"
        '    command: ["mongod", "--port", "$MONGO_PORT"]\n'
        "    volumes:\n"
        "      - $MONGO_PATH:/data/db\n"
        "      - $MONGO_INITDB_PATH:/docker-entrypoint-initdb.d\n"
        "    ports:\n"
        '      - "$MONGO_PORT:$MONGO_PORT"\n'
        "    secrets:\n"
        "      - mongo-root-password\n"
        "    environment:\n") + mongo_env + RESTART
    writer = {"MONGO_WRITER_USERNAME": "alertprocessor",
              "MONGO_WRITER_PASSWORD_FILE": f"{SECRET}mongo-alertprocessor-password"}
    logger = {"MONGO_LOGGER_USERNAME": "logger", "MONGO_LOGGER_PASSWORD_FILE": f"{SECRET}mongo-logger-password"}
    services = [
        _ampel_service("stats", '["ampel-statspublisher"]', VOLUME_SRC, ["mongo-logger-password", "archive-read-password"],
                       dict(logger, **ARCHIVE_AT, ARCHIVE_READER_USERNAME="ampel-readonly",
                            ARCHIVE_READER_PASSWORD_FILE=f"{SECRET}archive-read-password"),
                       ["mongo", "archive", "graphite"]),
        _ampel_service("alertprocessor",
                       '["ampel-alertprocessor", "--broker", "epyc.astro.washington.edu:9092", "--group", "$GROUP_NAME"]',
                       VOLUME_SRC + CATSHTM,
                       ["archive-write-password", "mongo-alertprocessor-password", "mongo-logger-password"],
                       dict(writer, **ARCHIVE_AT, ARCHIVE_WRITER_USERNAME="ampel-client",
                            ARCHIVE_WRITER_PASSWORD_FILE=f"{SECRET}archive-write-password"),
                       ["mongo", "archive"],
                       "    deploy:\n      replicas: $NUM_STREAMS\n      restart_policy:\n        condition: any\n"
                       "        delay: 10s\n"),
        _ampel_service("followup", '["ampel-followup"]', BIND_SRC + CATSHTM,
                       ["mongo-alertprocessor-password", "catalog-write-password"], writer, ["mongo", "archive", "catalog"]),
        _ampel_service("t2-controller", '["ampel-t2"]', BIND_SRC + "      - type: tmpfs\n        target: /tmp\n",
                       ["mongo-alertprocessor-password"], writer, ["mongo"]),
        _ampel_service("t3-controller", '["ampel-t3"]', VOLUME_SRC, ["catalog-write-password"],
                       {"EXTCATS_WRITER_USERNAME": "ToO", "EXTCATS_WRITER_PASSWORD_FILE": f"{SECRET}catalog-write-password"},
                       ["mongo"]),
    ]
    secrets = "\nsecrets:\n" + "".join(f"  {s}:\n    file: secrets/{s}.txt\n" for s in SECRET_NAMES)
    return head + "".join(services) + secrets


SECRET_NAMES = ["archive-read-password", "archive-write-password", "mongo-root-password",
                "mongo-alertprocessor-password", "mongo-logger-password", "catalog-read-password",
                "catalog-write-password"]

TRANSIT_YML = textwrap.dedent("""\
    version: '3.4'
    services:
      archive:
        image: postgres:10.3
        command: ["postgres", "-p", "$ARCHIVE_PORT"]
        volumes:
          - $ARCHIVE_PATH:/var/lib/postgresql/data
          - $ARCHIVE_INITDB_PATH:/docker-entrypoint-initdb.d
          - /var/tmp:/run/postgresql
        ports:
          - "$ARCHIVE_PORT:$ARCHIVE_PORT"
        secrets:
          - archive-root-password
          - archive-read-password
          - archive-write-password
        environment:
          POSTGRES_USER: ampel
          POSTGRES_DB: ztfarchive
          POSTGRES_PASSWORD_FILE: /run/secrets/archive-root-password
          ARCHIVE_READ_USER: ampel-readonly
          ARCHIVE_READ_USER_PASSWORD_FILE: /run/secrets/archive-read-password
          ARCHIVE_WRITE_USER: ampel-client
          ARCHIVE_WRITE_USER_PASSWORD_FILE: /run/secrets/archive-write-password
        deploy:
          restart_policy:
            condition: any
            delay: 10s
      graphite:
        image: graphiteapp/graphite:1.1.3
        ports:
          - "$GRAPHITE_PORT:$GRAPHITE_PORT"
        secrets:
          - desycloud-password
        environment:
          GRAPHITE_PORT: $GRAPHITE_PORT
        deploy:
          restart_policy:
            condition: any
            delay: 10s
    secrets:
      archive-root-password:
        file: secrets/archive-root-password.txt
      archive-read-password:
        file: secrets/archive-read-password.txt
      archive-write-password:
        file: secrets/archive-write-password.txt
      desycloud-password:
        file: secrets/desycloud-password.txt
    """)
TRANSIT_SECRET_NAMES = ["archive-root-password", "archive-read-password", "archive-write-password",
                        "desycloud-password"]

# The archive's initdb directory in v0.3.5's shape: the schema at 1.8, numbered
# migrations to 3.0 (each recording its version), and create_users.sh, which sorts
# after them and grants on the tables that exist then.
ARCHIVE_INITDB = {
    "00_archive_schema_1.8.sql": textwrap.dedent("""\
        -- the archive of every alert (sandbox fixture in the shape of Ampel-core v0.3.5's)
        CREATE TABLE versions (version_id SERIAL PRIMARY KEY, alert_version TEXT NOT NULL UNIQUE);
        CREATE TABLE alert (alert_id BIGSERIAL PRIMARY KEY, objectId TEXT NOT NULL, candid BIGINT NOT NULL,
                            programid INTEGER NOT NULL, schemavsn TEXT NOT NULL, partition INTEGER,
                            ingestion_time BIGINT, UNIQUE (candid, programid));
        CREATE TABLE candidate (candidate_id BIGSERIAL PRIMARY KEY, candid BIGINT NOT NULL, programid INTEGER NOT NULL,
                                jd DOUBLE PRECISION NOT NULL, fid INTEGER NOT NULL, ra DOUBLE PRECISION NOT NULL,
                                dec DOUBLE PRECISION NOT NULL, magpsf REAL, sigmapsf REAL, UNIQUE (candid, programid));
        CREATE TABLE prv_candidate (prv_candidate_id BIGSERIAL PRIMARY KEY, candid BIGINT, jd DOUBLE PRECISION NOT NULL,
                                    fid INTEGER NOT NULL, magpsf REAL);
        CREATE TABLE upper_limit (upper_limit_id BIGSERIAL PRIMARY KEY, jd DOUBLE PRECISION NOT NULL, fid INTEGER NOT NULL,
                                  diffmaglim REAL);
        CREATE TABLE cutout (cutout_id BIGSERIAL PRIMARY KEY, alert_id BIGINT REFERENCES alert, kind TEXT NOT NULL,
                             stampData BYTEA);
        CREATE TABLE alert_prv_candidate_pivot (alert_id BIGINT REFERENCES alert, prv_candidate_id BIGINT[]);
        CREATE TABLE alert_upper_limit_pivot (alert_id BIGINT REFERENCES alert, upper_limit_id BIGINT[]);
        INSERT INTO versions (alert_version) VALUES ('1.8');
        """),
    "01_schema_1.9.sql": textwrap.dedent("""\
        ALTER TABLE candidate ADD COLUMN drb REAL;
        INSERT INTO versions (alert_version) VALUES ('1.9');
        """),
    "02_schema_2.0.sql": textwrap.dedent("""\
        -- 2.0 moves the programme into the candidate's own column: data moves with an UPDATE
        ALTER TABLE candidate ADD COLUMN programpi TEXT;
        UPDATE candidate SET programpi = 'ZTF' WHERE programid = 1;
        INSERT INTO versions (alert_version) VALUES ('2.0');
        """),
    "03_cone_search.sql": textwrap.dedent("""\
        -- needs the superuser: extensions
        CREATE EXTENSION IF NOT EXISTS cube;
        CREATE EXTENSION IF NOT EXISTS earthdistance;
        CREATE INDEX candidate_cone ON candidate USING gist (ll_to_earth(dec, ra));
        """),
    "04_schema_3.0.sql": textwrap.dedent("""\
        ALTER TABLE candidate
        """) + ",\n".join(f"    ADD COLUMN {c} REAL" for c in (
            "ssdistnr", "ssmagnr", "sumrat", "magapbig", "sigmagapbig", "ranr", "decnr", "sgmag1", "srmag1",
            "simag1", "szmag1", "sgscore1", "distpsnr1", "nmtchps", "jdstarthist", "scorr")) + textwrap.dedent(""";
        INSERT INTO versions (alert_version) VALUES ('3.0');
        """),
    "create_users.sh": textwrap.dedent("""\
        #!/bin/bash
        # sourced by postgres' entrypoint after the schema: the read and write users, their
        # passwords from the secrets (a value, or a *_FILE: singularity-stack 0.2.2 turns the
        # files into values); grants on the tables that exist now (no default privileges)
        set -e
        file_env ARCHIVE_READ_USER_PASSWORD
        file_env ARCHIVE_WRITE_USER_PASSWORD
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-EOSQL
        	CREATE USER "$ARCHIVE_READ_USER" PASSWORD '$ARCHIVE_READ_USER_PASSWORD';
        	CREATE USER "$ARCHIVE_WRITE_USER" PASSWORD '$ARCHIVE_WRITE_USER_PASSWORD';
        	GRANT SELECT ON ALL TABLES IN SCHEMA public TO "$ARCHIVE_READ_USER";
        	GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "$ARCHIVE_WRITE_USER";
        	GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "$ARCHIVE_WRITE_USER";
        EOSQL
        """),
}


def dockerfile(repos, git_host):
    clones = "".join(f"RUN git clone git@github-{r.alias}:{r.org}/{r.name}.git /Ampel/{r.dir}\n" for r in repos)
    return (
        "# Ampel image for the dryrun stack (sandbox fixture in the shape of v0.3.5's).\n"
        f"FROM {BASE_IMAGE} AS conda\n"
        "\n"
        "# Set up deploy keys and clone the Ampel repos\n"
        "RUN mkdir /root/.ssh/\n"
        "ADD deploy-keys/id_rsa* /root/.ssh/\n"
        "RUN chmod 700 /root/.ssh/id_rsa*\n"
        "# the sandbox's github host key (the real recipe runs ssh-keyscan github.com)\n"
        "COPY deploy-keys/known_hosts /root/.ssh/known_hosts\n"
        "# one Host entry per deploy key: github-<alias> for deploy-keys/id_rsa.<alias>\n"
        "RUN find /root/.ssh/ -type f \\( -iname 'id_rsa*' -and -not -iname '*.pub' \\) | cut -d. -f 3 | while read repo; do \\\n"
        "echo \"Host github-$repo\" >> /root/.ssh/config; \\\n"
        f"echo \"    HostName {git_host}\" >> /root/.ssh/config; \\\n"
        "echo \"    User git\" >> /root/.ssh/config; \\\n"
        "echo \"    IdentityFile /root/.ssh/id_rsa.$repo\" >> /root/.ssh/config; \\\n"
        "done\n"
        "RUN mkdir /Ampel\n"
        f"{clones}"
        "\n"
        "COPY environment.yml install-env.py /\n"
        "RUN python3 /install-env.py /environment.yml\n"
        "\n"
        "# only the installed environment and /Ampel leave the stage that holds the keys\n"
        f"FROM {BASE_IMAGE}\n"
        "COPY --from=conda /usr/local /usr/local\n"
        "COPY --from=conda /Ampel /Ampel\n"
        "RUN mkdir -p /catalogs/catsHTM /run/secrets\n"
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        'VOLUME ["/Ampel"]\n'
        "ADD docker-entrypoint.sh /\n"
        'ENTRYPOINT ["/docker-entrypoint.sh"]\n'
    )


def environment_yml(repos):
    pairs = "".join(f"    - -e\n    - /Ampel/{r.dir}\n" for r in repos)
    return ("name: ampel\nchannels:\n  - ampelproject\n  - conda-forge\ndependencies:\n"
            "  - python>=3.6\n  - pyyaml\n  - pip:\n" + pairs)


INSTALL_ENV = '''\
"""Install environment.yml's pip section (the sandbox's stand-in for `conda env create`)."""
import subprocess
import sys

import yaml

env = yaml.safe_load(open(sys.argv[1]))
args = []
for dep in env.get("dependencies", []):
    if isinstance(dep, dict) and "pip" in dep:
        args += [str(a) for a in dep["pip"]]
cmd = [sys.executable, "-m", "pip", "install", "--break-system-packages", "--no-index",
       "--no-build-isolation", "--no-cache-dir", *args]
print("+", " ".join(cmd), flush=True)
sys.exit(subprocess.call(cmd))
'''

ENTRYPOINT = '#!/bin/sh\n\nset -eu\n\nexec "$@"\n'


def core_files(git_host, known_hosts, repos=None):
    repos = repos or [r for r in REPOS if r.in_image]
    scripts = [
        "ampel-alertprocessor=ampel.core.services:alertprocessor",
        "ampel-statspublisher=ampel.core.services:statspublisher",
        "ampel-followup=ampel.core.services:followup",
        "ampel-t2=ampel.core.services:t2",
        "ampel-t3=ampel.core.services:t3",
    ]
    return {
        "setup.py": _setup_py("ampel-core", ["ampel", "ampel.core"], ["PyYAML"], scripts),
        "ampel/__init__.py": "",
        "ampel/db_schema.py": "# Bump when the live database layout changes: a new live database is then necessary.\nSCHEMA_VERSION = 3\n",
        "ampel/core/__init__.py": '__version__ = "0.3.5"\n',
        "ampel/core/services.py": SERVICES_PY,
        "tests/test_services.py": CORE_TESTS,
        "deploy/up": UP_SCRIPT,
        "deploy/production/dryrun.env": DRYRUN_ENV,
        "deploy/production/burst.yml": burst_yml(),
        "deploy/production/transit.yml": TRANSIT_YML,
        "deploy/production/initdb/mongo/load_config.sh": "#!/bin/sh\n# run by mongo's entrypoint on a fresh database\n",
        "deploy/production/initdb/catalog/load_config.sh": "#!/bin/sh\n# run by mongo's entrypoint on a fresh catalog\n",
        **{f"deploy/production/initdb/archive/{name}": text for name, text in ARCHIVE_INITDB.items()},
        f"{IMAGE_DIR}/Dockerfile": dockerfile(repos, git_host),
        f"{IMAGE_DIR}/environment.yml": environment_yml(repos),
        f"{IMAGE_DIR}/install-env.py": INSTALL_ENV,
        f"{IMAGE_DIR}/docker-entrypoint.sh": ENTRYPOINT,
        f"{IMAGE_DIR}/deploy-keys/known_hosts": known_hosts + "\n",
        f"{IMAGE_DIR}/deploy-keys/.gitignore": "# private deploy keys never enter git\nid_*\n",
        ".gitignore": "__pycache__/\n*.egg-info/\n",
    }


# A T0 filter as the contrib repos carry them, and its unit tests (the runbook's
# test step runs them; a test breaks the threshold to see a deploy stop).
FILTER_PY = '''"""A T0 filter: accept an alert whose real-bogus score reaches the threshold."""
THRESHOLD = 0.5


def accept(alert):
    return alert.get("rb", 0.0) >= THRESHOLD
'''


def filter_tests(package):
    return (
        f"from {package}.filter import accept\n\n\n"
        "def test_a_real_looking_alert_is_accepted():\n"
        "    assert accept({\"rb\": 0.7})\n\n\n"
        "def test_a_bogus_alert_is_rejected():\n"
        "    assert not accept({\"rb\": 0.1})\n\n\n"
        "def test_an_alert_without_score_is_rejected():\n"
        "    assert not accept({})\n"
    )


CORE_TESTS = """\
from ampel.core import services


def test_every_console_script_has_its_service():
    for name in ("alertprocessor", "statspublisher", "followup", "t2", "t3"):
        assert callable(getattr(services, name))
"""


def plugin_files(repo, requires, script):
    package = repo.dir.replace("-", "_")
    return {
        "setup.py": _setup_py(repo.dir, [package], requires, [script]),
        f"{package}/__init__.py": f'"""{repo.dir} (sandbox fixture)."""\n\n\ndef main():\n    print("{repo.dir} 0.3.5")\n',
        f"{package}/filter.py": FILTER_PY,
        f"tests/test_{package}_filter.py": filter_tests(package),
        ".gitignore": "__pycache__/\n*.egg-info/\n",
    }


def _write(root, files):
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        if rel.endswith(("/up", ".sh")):
            p.chmod(0o755)


def commit_all(work, message):
    env = dict(os.environ, **GIT_ENV)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", message], check=True, env=env)


def repo_files(repo, git_host, known_hosts):
    if repo == CORE:
        return core_files(git_host, known_hosts)
    return plugin_files(repo, ["ampel-core"], f"{repo.dir}-info={repo.dir.replace('-', '_')}:main")


def make_repos(srv: Path, git_host: str, known_hosts: str):
    """Create the bare repos under `srv` (…/srv/git), as <org>/<name>.git."""
    for repo in REPOS:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / repo.dir
            subprocess.run(["git", "init", "-q", "-b", "master", str(work)], check=True)
            _write(work, repo_files(repo, git_host, known_hosts))
            commit_all(work, f"{repo.dir} 0.3.5")
            bare = srv / repo.org / f"{repo.name}.git"
            bare.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)


MONGOD = '''#!/usr/bin/python3
"""mongod -- SANDBOX STAND-IN for MongoDB 3.6 in the sandbox's mongo:3.6 image.

Takes a moment to start, as the real one does, then listens on --port; every
line a client sends is appended to <dbpath>/alerts.jsonl, so a test can tell
which live database a deployment writes.
"""
import os
import socket
import sys
import threading
import time

args = sys.argv[1:]
port = int(args[args.index("--port") + 1]) if "--port" in args else 27017
dbpath = args[args.index("--dbpath") + 1] if "--dbpath" in args else "/data/db"
if not os.path.isdir(dbpath):
    print(f"exception in initAndListen: NonExistentPath: Data directory {dbpath} not found., terminating", flush=True)
    sys.exit(100)
with open(os.path.join(dbpath, "mongod.lock"), "w") as f:
    f.write(str(os.getpid()))
print(f"MongoDB starting : pid={os.getpid()} port={port} dbpath={dbpath} (sandbox stand-in)", flush=True)
time.sleep(1.9)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(64)
print(f"waiting for connections on port {port}", flush=True)
lock = threading.Lock()


def serve(conn):
    with conn, conn.makefile("rb") as f:
        for line in f:
            with lock, open(os.path.join(dbpath, "alerts.jsonl"), "ab") as out:
                out.write(line)


while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''

MONGO_DOCKERFILE = f"""\
# mongo:3.6 for the sandbox: a stand-in mongod on the Ampel base system
FROM {BASE_IMAGE}
COPY mongod /usr/bin/mongod
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/bin/mongod /usr/local/bin/docker-entrypoint.sh && mkdir -p /data/db /docker-entrypoint-initdb.d
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mongod"]
"""


def mongo_context(ctx: Path):
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(MONGO_DOCKERFILE)
    (ctx / "mongod").write_text(MONGOD)
    (ctx / "docker-entrypoint.sh").write_text(ENTRYPOINT)


# -- postgres:10.3 (transit's archive) ---------------------------------------------
# No hub: the image transit.yml names is built here from Debian's PostgreSQL, with an
# entrypoint written for the sandbox that behaves as the official image's did in the
# 10.3 era (docker-library/postgres, March 2018) where AMPEL depends on it.
POSTGRES_IMAGE = "postgres:10.3"
POSTGRES_MAJOR = "15"  # Debian 12's; the engine is real PostgreSQL, its version not 10.3's
POSTGRES_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
# no cluster of Debian's own: the entrypoint makes one in $PGDATA
RUN mkdir -p /etc/postgresql-common \\
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \\
 && apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-{POSTGRES_MAJOR} >/dev/null \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql && chmod 1777 /var/run/postgresql \\
 && sample=/usr/share/postgresql/{POSTGRES_MAJOR}/postgresql.conf.sample \\
 && sed -ri "s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!" $sample \\
 && echo "password_encryption = md5  # 10.3's default: md5 lines in pg_hba.conf match it" >> $sample
ENV PATH=/usr/lib/postgresql/{POSTGRES_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
LABEL org.ampelproject.sandbox=postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
"""

POSTGRES_ENTRYPOINT = r'''#!/bin/bash
# docker-entrypoint.sh of the sandbox's postgres:10.3 (written for ampel-tasks).
# As the official image's entrypoint of the 10.3 era: `-x` arguments are the server's;
# on a $PGDATA without PG_VERSION: initdb, POSTGRES_USER (default postgres) the
# superuser with POSTGRES_PASSWORD (md5; none: trust, with a warning), the database
# POSTGRES_DB (default: the user's name), `host all all all md5` appended to
# pg_hba.conf, then /docker-entrypoint-initdb.d/* in glob order through a server
# listening on a socket only (*.sh sourced, *.sql and *.sql.gz through
# `psql -v ON_ERROR_STOP=1`, anything else ignored); a failure there stops the start.
# On a $PGDATA that has PG_VERSION: nothing but starting the server. Each X_FILE
# variable gives X from a file (secrets). Under Singularity the caller is not root:
# the server runs as the caller, as the official image allows.
set -e

file_env() {  # file_env VAR [DEFAULT]: VAR, or the contents of the file VAR_FILE names (the official name: initdb scripts call it)
	local var=$1 file_var="$1_FILE" value=${2:-}
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		echo >&2 "error: both $var and $file_var are set (but are exclusive)"
		exit 1
	fi
	if [ -n "${!var:-}" ]; then value=${!var}; elif [ -n "${!file_var:-}" ]; then value=$(< "${!file_var}"); fi
	export "$var=$value"
	unset "$file_var"
}

[ "${1:0:1}" = - ] && set -- postgres "$@"

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" && chown -R postgres "$PGDATA" && chmod 700 "$PGDATA"
	chown -R postgres /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ "$1" = postgres ]; then
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA" 2>/dev/null || :
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		file_env POSTGRES_INITDB_ARGS
		eval "initdb --username=postgres $POSTGRES_INITDB_ARGS"
		file_env POSTGRES_PASSWORD
		if [ -n "$POSTGRES_PASSWORD" ]; then
			password="PASSWORD '$POSTGRES_PASSWORD'" method=md5
		else
			echo >&2 "WARNING: no password has been set for the database (POSTGRES_PASSWORD): anyone who reaches the port gets in"
			password= method=trust
		fi
		printf '\nhost all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
		PGUSER=postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start
		file_env POSTGRES_USER postgres
		file_env POSTGRES_DB "$POSTGRES_USER"
		psql=(psql -v ON_ERROR_STOP=1 -h /var/run/postgresql)
		if [ "$POSTGRES_DB" != postgres ]; then
			"${psql[@]}" --username postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
		fi
		[ "$POSTGRES_USER" = postgres ] && op=ALTER || op=CREATE
		"${psql[@]}" --username postgres -c "$op USER \"$POSTGRES_USER\" WITH SUPERUSER $password"
		psql+=(--username "$POSTGRES_USER" --dbname "$POSTGRES_DB")
		export PGHOST=/var/run/postgresql
		for f in /docker-entrypoint-initdb.d/*; do
			case "$f" in
				*.sh) echo "$0: running $f"; . "$f" ;;
				*.sql) echo "$0: running $f"; "${psql[@]}" -f "$f" ;;
				*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | "${psql[@]}" ;;
				*) echo "$0: ignoring $f" ;;
			esac
		done
		unset PGHOST
		PGUSER=postgres pg_ctl -D "$PGDATA" -m fast -w stop
		echo "PostgreSQL init process complete; ready for start up."
	fi
fi

exec "$@"
'''


# graphite (transit's metrics): a stand-in that takes carbon's plaintext lines on its port
GRAPHITE_IMAGE = "graphiteapp/graphite:1.1.3"  # (graphite-1.1.3.simg: 2.4 limits file + instance name to 32)
GRAPHITE_DOCKERFILE = f"""\
# {GRAPHITE_IMAGE} for the sandbox: a stand-in that takes carbon's plaintext protocol
FROM {BASE_IMAGE}
COPY carbon.py /usr/local/bin/carbon.py
LABEL org.ampelproject.sandbox=graphite
ENTRYPOINT ["python3", "-u", "/usr/local/bin/carbon.py"]
"""
CARBON = '''"""carbon -- SANDBOX STAND-IN for graphite's carbon: takes plaintext metric lines
(`path value timestamp`) on $GRAPHITE_PORT (default 2003) and counts them."""
import os
import socketserver

PORT = int(os.environ.get("GRAPHITE_PORT", "2003"))


class Lines(socketserver.StreamRequestHandler):
    def handle(self):
        n = sum(1 for _ in self.rfile)
        print(f"carbon: {n} metric lines from {self.client_address[0]}")


socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("0.0.0.0", PORT), Lines) as server:
    print(f"carbon (sandbox stand-in) listening on {PORT}")
    server.serve_forever()
'''


def graphite_context(ctx: Path):
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(GRAPHITE_DOCKERFILE)
    (ctx / "carbon.py").write_text(CARBON)


def postgres_context(ctx: Path):
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(POSTGRES_DOCKERFILE)
    (ctx / "docker-entrypoint.sh").write_text(POSTGRES_ENTRYPOINT)
    (ctx / "docker-entrypoint.sh").chmod(0o755)
