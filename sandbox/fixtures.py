"""The sandbox's GitHub content: small repos shaped like AmpelProject's of 2018.

ampel-core carries deploy/up, deploy/production/{dryrun.env,burst.yml,transit.yml}
and deploy/docker-images/devel/{Dockerfile,environment.yml,deploy-keys/} with the
Dockerfile's deploy-key convention (id_rsa.<repo>, Host github-<repo>).
"""
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

IMAGE_DIR = "deploy/docker-images/devel"
SANDBOX = Path(os.environ.get("AMPEL_SANDBOX_DIR", "/var/lib/ampel-sandbox"))
BURST = SANDBOX / "hosts" / "burst"
BASE_IMAGE = "ampel-sandbox-base:bookworm"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ampel Bot", "GIT_AUTHOR_EMAIL": "ampel@sandbox.invalid",
    "GIT_COMMITTER_NAME": "Ampel Bot", "GIT_COMMITTER_EMAIL": "ampel@sandbox.invalid",
}


def _setup_py(name, package, requires, scripts, version="0.3.5"):
    return textwrap.dedent(f"""\
        from setuptools import setup

        setup(
            name={name!r},
            version={version!r},
            packages={[package] + ([package + '.core'] if name == 'ampel-core' else [])!r},
            install_requires={requires!r},
            entry_points={{
                "console_scripts": {scripts!r},
            }},
        )
        """)


SERVICES_PY = '''\
"""Ampel services as the dryrun stack runs them (sandbox fixture)."""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _secret(variable):
    path = os.environ.get(variable)
    if not path:
        print(f"ERROR: {variable} is not set; no credentials", flush=True)
        sys.exit(2)
    with open(path) as f:
        if not f.read().strip():
            print(f"ERROR: {variable} points at an empty file", flush=True)
            sys.exit(2)


def _serve(name, secret_variable, extra=""):
    replica = os.environ.get("SINGULARITY_STACK_REPLICA", "0")
    _secret(secret_variable)
    print(f"{name} {replica} starting{extra}", flush=True)
    print(f"{name} {replica} authenticated with credentials from ${secret_variable}", flush=True)
    if os.path.exists(os.path.join(HERE, "FAULT")):
        print(f"ERROR {name} {replica}: cannot reach the database", flush=True)
        raise RuntimeError("fault injected by the sandbox")
    beat = 0
    while True:
        time.sleep(5)
        beat += 1
        print(f"{name} {replica} processed {beat * 7} alerts", flush=True)


def alertprocessor():
    p = argparse.ArgumentParser()
    p.add_argument("--group", required=True)
    p.add_argument("--mongo", required=True)
    a = p.parse_args()
    _serve("AlertProcessor", "MONGO_WRITER_PASSWORD_FILE", f" in consumer group {a.group}, mongo {a.mongo}")


def stats():
    _serve("Stats", "MONGO_READER_PASSWORD_FILE")


def followup():
    _serve("Followup", "MONGO_WRITER_PASSWORD_FILE")


def t2():
    _serve("T2Controller", "MONGO_WRITER_PASSWORD_FILE")


def t3():
    _serve("T3Controller", "DESYCLOUD_PASSWORD_FILE")
'''

UP_SCRIPT = r'''#!/bin/bash
# deploy/up CONFIG [MACHINE]: redeploy MACHINE's stack with production/CONFIG.env.
# Run it in the directory that holds `secrets`.
set -e
here=$(cd "$(dirname "$0")" && pwd)
config=$1
machine=${2:-$(hostname -s)}
if [ -z "$config" ] || [ ! -f "$here/production/$config.env" ]; then
    echo "usage: up CONFIG [MACHINE]; CONFIG is one of: $(cd "$here/production" && ls *.env | sed 's/\.env$//' | tr '\n' ' ')" >&2
    exit 2
fi
if [ "$config" != dryrun ]; then
    echo "up: only the dryrun configuration is deployed from here" >&2
    exit 2
fi
set -a
. <(grep -v '^[[:space:]]*#' "$here/production/$config.env")
set +a
singularity-stack rm "$machine"
singularity-stack deploy -c "$here/production/$machine.yml" "$machine"
singularity-stack list
'''


def dryrun_env():
    b = BURST
    return textwrap.dedent(f"""\
        # Ampel "dryrun" configuration for burst (sandbox copy of Ampel-core's deploy/production/dryrun.env)
        # Values are read by deploy/up and exported to singularity-stack.
        AMPEL_TAG=v0.3.0
        AMPEL_SRC={b}/scratch/ampel/Ampel-v0.3

        # archive database on transit
        ARCHIVE_HOST=transit
        ARCHIVE_PORT=5432
        ARCHIVE_PATH=/data/ampel/archive
        ARCHIVE_INITDB_PATH=/data/ampel/archive-init

        GRAPHITE_HOST=transit
        GRAPHITE_PORT=2003
        METRICS_DIR={b}/data/ampel/metrics

        # live database: a directory per version, see the runbook
        MONGO_HOST=localhost
        MONGO_PORT=27017
        MONGO_PATH={b}/data/ampel/mongo/live/v0.3.0
        MONGO_INITDB_PATH={b}/data/ampel/mongo/init

        # one AlertProcessor per Kafka partition
        NUM_STREAMS=16
        GROUP_NAME=ampel-v0.3.0

        CATSHTM_PATH={b}/data/ampel/catalogs/catshtm
        CATALOG_HOST=localhost
        CATALOG_PORT=27018
        CATALOG_PATH={b}/data/ampel/catalogs/db
        CATALOG_INITDB_PATH={b}/data/ampel/catalogs/init
        CATALOG_MONGODUMP_PATH={b}/data/ampel/catalogs/dump
        """)


BURST_YML = textwrap.dedent("""\
    version: '3.5'

    x-ampel: &ampel
      image: ampel:${AMPEL_TAG}
      volumes:
        - type: volume
          source: ${AMPEL_SRC}
          target: /Ampel
      environment:
        MONGO_WRITER_PASSWORD_FILE: /run/secrets/mongo-writer
        MONGO_READER_PASSWORD_FILE: /run/secrets/mongo-reader
        DESYCLOUD_PASSWORD_FILE: /run/secrets/desycloud
      secrets:
        - mongo-writer
        - mongo-reader
        - desycloud

    services:
      catalog:
        image: mongo-3.6
        command: mongod --port ${CATALOG_PORT} --dbpath /data/db
        ports:
          - "${CATALOG_PORT}:${CATALOG_PORT}"
        volumes:
          - type: bind
            source: ${CATALOG_PATH}
            target: /data/db
      mongo:
        image: mongo-3.6
        command: mongod --port ${MONGO_PORT} --dbpath /data/db
        depends_on:
          - catalog
        ports:
          - "${MONGO_PORT}:${MONGO_PORT}"
        volumes:
          - type: bind
            source: ${MONGO_PATH}
            target: /data/db
      stats:
        <<: *ampel
        command: ampel-stats
        depends_on:
          - mongo
      alertprocessor:
        <<: *ampel
        command: ampel-alertprocessor --group ${GROUP_NAME} --mongo ${MONGO_HOST}:${MONGO_PORT}
        depends_on:
          - mongo
        deploy:
          replicas: ${NUM_STREAMS}
      followup:
        <<: *ampel
        command: ampel-followup
        depends_on:
          - mongo
      t2-controller:
        <<: *ampel
        command: ampel-t2
        depends_on:
          - mongo
      t3-controller:
        <<: *ampel
        command: ampel-t3
        depends_on:
          - mongo

    secrets:
      mongo-writer:
        file: secrets/mongo-writer.txt
      mongo-reader:
        file: secrets/mongo-reader.txt
      desycloud:
        file: secrets/desycloud.txt
    """)

TRANSIT_YML = textwrap.dedent("""\
    version: '3.5'
    services:
      archive:
        image: postgres-10.simg
        command: postgres -D /var/lib/postgresql/data
      graphite:
        image: graphite.simg
        command: carbon-cache
    """)


def dockerfile(repos):
    clones = "".join(
        f"RUN git clone git@github-{r}:AmpelProject/{r}.git /Ampel/{r}\n" for r in repos
    )
    return (
        "# Ampel image for the dryrun stack.\n"
        "# The clone stage holds the deploy keys; it is never tagged or pushed:\n"
        "# only /Ampel is copied out of it into the image that ships.\n"
        f"FROM {BASE_IMAGE} AS clone\n"
        "COPY deploy-keys /root/.ssh\n"
        "RUN chmod 700 /root/.ssh && chmod 600 /root/.ssh/id_* /root/.ssh/config\n"
        "# changes whenever a repo's commit does, so the clones below are fresh\n"
        "ARG AMPEL_COMMITS=unknown\n"
        f"{clones}"
        "\n"
        f"FROM {BASE_IMAGE}\n"
        "COPY --from=clone /Ampel /Ampel\n"
        "COPY environment.yml install-env.py /opt/ampel/\n"
        "RUN python3 /opt/ampel/install-env.py /opt/ampel/environment.yml\n"
        'VOLUME ["/Ampel"]\n'
    )


def environment_yml(repos):
    pairs = "".join(f"    - -e\n    - /Ampel/{r}\n" for r in repos)
    return (
        "name: ampel\nchannels:\n  - ampelproject\n  - conda-forge\ndependencies:\n"
        "  - python=3.11\n  - pyyaml\n  - pip\n  - pip:\n" + pairs
    )


INSTALL_ENV = '''\
"""Install environment.yml's pip section (the sandbox's stand-in for `conda env update`)."""
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


def ssh_entry(repo, git_host):
    return (
        f"Host github-{repo}\n  HostName {git_host}\n  User git\n"
        f"  IdentityFile /root/.ssh/id_rsa.{repo}\n  IdentitiesOnly yes\n"
        "  UserKnownHostsFile /root/.ssh/known_hosts\n  StrictHostKeyChecking yes\n"
    )


def _write(root, files):
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        if rel.endswith("/up"):
            p.chmod(0o755)


def core_files(git_host, known_hosts, repos=("ampel-core", "ampel-base", "ampel-contrib-hu")):
    scripts = [
        "ampel-alertprocessor=ampel.core.services:alertprocessor",
        "ampel-stats=ampel.core.services:stats",
        "ampel-followup=ampel.core.services:followup",
        "ampel-t2=ampel.core.services:t2",
        "ampel-t3=ampel.core.services:t3",
    ]
    keys = "".join(ssh_entry(r, git_host) + "\n" for r in repos)
    return {
        "setup.py": _setup_py("ampel-core", "ampel", ["PyYAML"], scripts),
        "ampel/__init__.py": "",
        "ampel/db_schema.py": "# Bump when the live database layout changes: a new live database is then necessary.\nSCHEMA_VERSION = 3\n",
        "ampel/core/__init__.py": '__version__ = "0.3.5"\n',
        "ampel/core/services.py": SERVICES_PY,
        "deploy/up": UP_SCRIPT,
        "deploy/production/dryrun.env": dryrun_env(),
        "deploy/production/burst.yml": BURST_YML,
        "deploy/production/transit.yml": TRANSIT_YML,
        f"{IMAGE_DIR}/Dockerfile": dockerfile(repos),
        f"{IMAGE_DIR}/environment.yml": environment_yml(repos),
        f"{IMAGE_DIR}/install-env.py": INSTALL_ENV,
        f"{IMAGE_DIR}/deploy-keys/config": keys,
        f"{IMAGE_DIR}/deploy-keys/known_hosts": known_hosts + "\n",
        f"{IMAGE_DIR}/deploy-keys/.gitignore": "# private deploy keys never enter git\nid_*\n",
        ".gitignore": "__pycache__/\n*.egg-info/\n",
    }


def plugin_files(name, package, requires, script):
    return {
        "setup.py": _setup_py(name, package, requires, [script]),
        f"{package}/__init__.py": f'"""{name} (sandbox fixture)."""\n\n\ndef main():\n    print("{name} 0.3.5")\n',
        ".gitignore": "__pycache__/\n*.egg-info/\n",
    }


def commit_all(work, message):
    env = dict(os.environ, **GIT_ENV)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", message], check=True, env=env)


def make_repos(base: Path, git_host: str, known_hosts: str):
    """Create the bare repos under `base` (…/srv/git/AmpelProject)."""
    content = {
        "ampel-core": core_files(git_host, known_hosts),
        "ampel-base": plugin_files("ampel-base", "ampel_base", ["ampel-core"], "ampel-base-info=ampel_base:main"),
        "ampel-contrib-hu": plugin_files("ampel-contrib-hu", "ampel_contrib_hu", ["ampel-base"], "ampel-hu=ampel_contrib_hu:main"),
        "ampel-contrib-foo": plugin_files("ampel-contrib-foo", "ampel_contrib_foo", ["ampel-base"], "ampel-foo=ampel_contrib_foo:main"),
    }
    for repo, files in content.items():
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / repo
            subprocess.run(["git", "init", "-q", "-b", "master", str(work)], check=True)
            _write(work, files)
            commit_all(work, f"{repo} 0.3.5")
            bare = base / f"{repo}.git"
            subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
