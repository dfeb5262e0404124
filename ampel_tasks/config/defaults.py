"""Collection defaults: the `ampel` namespace every profile and env var overrides.

The shape of this dict is also the schema `settings` validates against: a key
that is not here is unknown, a value whose type differs from the default's is
wrong. `hosts` and `commands` are the exceptions documented in settings.py.
"""
from .version import DEFAULT_PATTERN

HOST_DEFAULTS = {"hostname": "", "port": 22, "user": "", "roles": []}

DEFAULTS = {
    "ampel": {
        "version_pattern": DEFAULT_PATTERN,
        # who runs the deploy; empty = the local login name
        "operator": "",
        # the runbook's `sudo su ampel`
        "service_user": "ampel",
        # the OpenSSH client config the hosts are reached with; empty = ~/.ssh/config
        "ssh_config": "",
        # host keys are checked against this file; empty = ~/.ssh/known_hosts
        "known_hosts": "",
        "timeouts": {
            "connect": 10,
            "banner": 15,
            "auth": 15,
            "channel": 30,
            "keepalive": 15,
            # deploy/up as a whole: singularity-stack 0.2.2 waits hours for a port
            # that never opens (a service that dies at start); then it is ended
            "up": 1200,
        },
        "hosts": {
            "burst": {"hostname": "burst.ifh.de", "port": 22, "user": "", "roles": ["service", "pull"]},
            "transit": {"hostname": "transit.ifh.de", "port": 22, "user": "", "roles": ["pull", "archive"]},
        },
        # The operator's local clone of Ampel-core, where the image is built.
        "source": {
            "dir": ".",
            "image_dir": "deploy/docker-images/devel",
            "env_file": "deploy/production/dryrun.env",
            # Ampel-core v0.3.5 through v0.3.8; v0.4.0 moved them (config/examples/layout-v0.4.0.yaml)
            "stack_file": "deploy/production/burst.yml",
            "up_script": "deploy/up",
            # the recipe's convention: deploy-keys/id_rsa.<alias>, cloned as git@github-<alias>:<org>/<repo>.git
            "key_pattern": "id_rsa.{alias}",
            "host_alias": "github-{alias}",
            "git_host": "github.com",
            "org": "AmpelProject",
            "keys_page": "https://github.com/{org}/{repo}/settings/keys/new",
            "schema_marker": "ampel/db_schema.py",
            # where `tag` pushes the host copies (as the operator, from the service host)
            "push_url": "git@{git_host}:{org}/{repo}.git",
            # upstream's release tag of a version: `src` brings a repo to it, or to its
            # branch head where the repo has no such tag
            "release_tag": "{version}",
            # the tool's own tag of each deployment: {n} counts this version's deployments, so
            # deploying a version again makes a new tag and never moves one; the "/" keeps it
            # out of the release tags' names
            "tag_pattern": "deployed/{version}-{n}",
        },
        "image": {"name": "ampel", "label_prefix": "org.ampelproject"},
        "registry": {
            "name": "registry",
            "image": "registry:2",
            "address": "127.0.0.1",
            "port": 5000,
        },
        "output": {
            # print every line (build output, the hosts' own output) instead of one per step
            "verbose": False,
            # every run that changes something keeps its full output here (redacted), named
            # like the deployment's manifest: <version>.<started>.log
            "run_log_dir": "~/.local/state/ampel-tasks/runs",
        },
        "paths": {
            "singularity_dir": "/data/ampel/singularity",
            "mongo_live_dir": "/data/ampel/mongo/live",
            "dryrun_dir": "/home/ampel/dryrun",
            # the host copies mounted at /Ampel: one tree per minor series, the site's habit
            # ({version} and {minor} = v0.3 are known; empty = AMPEL_SRC of the local dryrun.env)
            "ampel_src": "/scratch/ampel/Ampel-{minor}",
            # who owns AMPEL_SRC and runs git there: empty = the operator (the runbook copies "as
            # your normal user"); the site later moved it into ampel's home: then `ampel`, and
            # ampel's own ssh set-up must reach ampel.source.push_url
            "ampel_src_owner": "",
            "state_dir": "/home/ampel/dryrun/.ampel-tasks",
            # where singularity-stack 0.2.2 keeps each replica's output (truncated at each deploy)
            "replica_log": "/var/tmp/{user}.singularity.{instance}.{source}",
        },
        # singularity-stack looks for `image: ampel:v0.3.5` as ampel-v0.3.5.simg in
        # $SINGULARITY_CACHEDIR (the runbook's ampel_v0.3.5.simg would never be found)
        "image_file": "ampel-{version}.simg",
        # what runs containers on the hosts; shown by `plan`. Singularity 2.x's
        # command forms are the defaults below (config/examples/ has 3.x and Apptainer)
        "runtime": "singularity 2.x",
        # The service user's shell after `sudo su ampel` and `conda activate
        # singularity-stack` (Ampel-core's deploy/README.rst): a non-interactive
        # shell reads neither ~/.bashrc nor conda's set-up, so every remote command
        # starts with these lines. A failing line stops the command and is named.
        "shell": {
            "preamble": [
                ". /scratch/jvs/miniconda3/etc/profile.d/conda.sh",
                "conda activate singularity-stack",
                "export SINGULARITY_CACHEDIR=/data/ampel/singularity",
            ],
        },
        "env": {
            "mongo_path": "{mongo_live_dir}/{version}",
            "group_name": "ampel-{version}",
        },
        # deploy/up CONFIG names production/CONFIG.env and takes the machine (= the
        # stack's name) from the service host's own hostname
        "stack": {"name": "burst", "config": "dryrun"},
        # the archive's own stack on the host with the role `archive` (transit): started with the
        # same deploy/up CONFIG, before burst's, and only when something it runs from changed
        # (that restarts postgres and graphite); its database is never removed nor emptied
        "archive": {
            "stack": "transit", "stack_file": "deploy/production/transit.yml", "service": "archive",
            # backups on transit (archive-backup, and before every migration): pg_dump's directory
            # format with this many parallel jobs; the whole database when it is smaller than
            # whole_below_gib, else the tables the migration touches
            "backup_dir": "/data/ampel/archive/backups", "backup_jobs": 4, "whole_below_gib": 50,
        },
        # Remote runtime as command templates; values are shell-quoted before filling.
        "commands": {
            # 2.x: the URI is the argument, the file name comes with --name and lands
            # in $SINGULARITY_CACHEDIR, which is therefore set to the target directory
            "pull": "SINGULARITY_NOHTTPS=1 SINGULARITY_CACHEDIR={dir} singularity pull --name {file} "
                    "docker://localhost:{registry_port}/{image}:{version}",
            "volume_init": "singularity-stack volume init {image_file} /Ampel {ampel_src}",
            # a repo that a rebuilt image added, copied out of it into an existing AMPEL_SRC
            "volume_add": "singularity exec {image_file} tar -C /Ampel -c {repo} | tar -C {ampel_src} -x",
            # singularity-stack is Python: off a terminal its output is block-buffered, so
            # deploy/up's transcript, `logs -f` over ssh and the nannies' lines in the
            # replica files (the nannies inherit deploy/up's environment) would arrive
            # late or never without PYTHONUNBUFFERED
            "up": "env PYTHONUNBUFFERED=1 {up_script} {config}",
            "logs": "PYTHONUNBUFFERED=1 singularity-stack logs {stack} {service}",
            "list": "singularity-stack list",
            # live instances (name, pid, image), whatever the stack cache says
            "instances": "singularity instance.list",
            # a command inside a running instance (the archive's psql): {instance} is instance://NAME
            "exec_instance": "singularity exec {instance} sh -c {command}",
            # a second container of the archive's image file (its pg_dump, pg_restore), bound to the
            # server's socket directory and to the directory of the dumps
            "exec_image": "singularity exec -B {socket_dir}:/run/postgresql -B {dumps} {image_file}",
            # singularity-stack 0.2.2's restart hazard (fixed upstream at 99ee5f0): a nanny in
            # its restart delay during a redeploy runs its OLD command in the NEW instance of
            # the same name. Its nannies are stopped before deploy/up (empty: not done).
            "stop_nannies": "pkill -TERM -u {user} -f '^[^ ]*python[^ ]* [^ ]*/[s]ingularity-stack deploy .* {stack}$' || true",
        },
        "secrets": {"local_dir": "secrets"},
        # the runbook's test step: run in /Ampel/<repo> of the image, the commit's tree in place
        "tests": {"command": "python3 -m pytest -q -p no:cacheprovider"},
        # executables on this machine run around a deploy (hooks.py): empty = none
        "hooks": {"pre_deploy": "", "post_deploy": "", "on_failure": ""},
        "health": {
            "timeout": 180,
            "stable": 5,
            "error_patterns": ["ERROR", "Traceback"],
            # read at most this much of each replica's new output per poll
            "max_bytes": 65536,
        },
    }
}
