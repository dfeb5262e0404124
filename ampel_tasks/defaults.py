"""Collection defaults: the `ampel` namespace every profile and env var overrides.

The shape of this dict is also the schema `settings` validates against: a key
that is not here is unknown, a value whose type differs from the default's is
wrong. `hosts` and `commands` are the exceptions documented in settings.py.
"""
from .version import DEFAULT_PATTERN

HOST_DEFAULTS = {"hostname": "", "port": 22, "user": "", "roles": [], "root": ""}

DEFAULTS = {
    "ampel": {
        "version_pattern": DEFAULT_PATTERN,
        # who runs the deploy; empty = the local login name
        "operator": "",
        # the runbook's `sudo su ampel`
        "service_user": "ampel",
        # OpenSSH client config fabric reads; empty = ~/.ssh/config
        "ssh_config": "",
        # host keys are checked against this file; empty = ~/.ssh/known_hosts
        "known_hosts": "",
        "timeouts": {
            "connect": 10,
            "banner": 15,
            "auth": 15,
            "channel": 30,
            "keepalive": 15,
        },
        "hosts": {
            "burst": {"hostname": "burst.ifh.de", "port": 22, "user": "", "roles": ["service", "pull"], "root": ""},
            "transit": {"hostname": "transit.ifh.de", "port": 22, "user": "", "roles": ["pull"], "root": ""},
        },
        # The operator's local clone of Ampel-core, where the image is built.
        "source": {
            "dir": ".",
            "image_dir": "deploy/docker-images/devel",
            "env_file": "deploy/production/dryrun.env",
            "stack_file": "deploy/production/burst.yml",
            "key_pattern": "id_rsa.{repo}",
            "host_alias": "github-{repo}",
            "git_host": "github.com",
            "org": "AmpelProject",
            "keys_page": "https://github.com/{org}/{repo}/settings/keys/new",
            "schema_marker": "ampel/db_schema.py",
            # where `tag` pushes the host copies (as the operator, from the service host)
            "push_url": "git@{git_host}:{org}/{repo}.git",
            "tag_pattern": "{version}",
        },
        "image": {"name": "ampel", "label_prefix": "org.ampelproject"},
        "registry": {
            "name": "registry",
            "image": "registry:2",
            "address": "127.0.0.1",
            "port": 5000,
        },
        "paths": {
            "singularity_dir": "/data/ampel/singularity",
            "mongo_live_dir": "/data/ampel/mongo/live",
            "dryrun_dir": "/home/ampel/dryrun",
            # empty = AMPEL_SRC from the stack's dryrun.env
            "ampel_src": "",
            "state_dir": "/home/ampel/dryrun/.ampel-tasks",
        },
        # the runbook's name; singularity-stack itself looks for ampel-v0.3.5.simg
        "image_file": "ampel_{version}.simg",
        "env": {
            "mongo_path": "{mongo_live_dir}/{version}",
            "group_name": "ampel-{version}",
        },
        "stack": {"name": "burst", "config": "dryrun", "machine": "burst"},
        # Remote runtime as command templates; values are shell-quoted before filling.
        "commands": {
            "pull": "SINGULARITY_NOHTTPS=1 singularity pull {file} docker://localhost:{registry_port}/{image}:{version}",
            "volume_init": "singularity-stack volume init {image_file} /Ampel {ampel_src}",
            "up": "{up_script} {config} {machine}",
            "logs": "singularity-stack logs {stack} {service}",
            "list": "singularity-stack list",
        },
        "secrets": {"local_dir": "secrets"},
        "health": {
            "timeout": 180,
            "settle": 10,
            "stable": 5,
            "error_patterns": ["ERROR", "Traceback"],
        },
    }
}
