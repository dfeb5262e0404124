"""The tasks that work on this machine: a repo's deploy key, the image, its tests, the
registry. Each is its signature, help and docstring (what `--list`, `--help` and tab
completion read, with nothing else imported) and a call into the module that owns it."""
from invoke import task

from .runoptions import run_options
from ..config.helptext import DRY_HELP, SKIP_TESTS_HELP, STEP_HELP


@task(help={
    "repo": "the GitHub repository, ORG/NAME or NAME (ORG = ampel.source.org), e.g. AmpelProject/ampel-contrib-foo",
    "alias": "the deploy key's name: deploy-keys/id_rsa.ALIAS, cloned through github-ALIAS (default: NAME, lower case)",
    "dir": "its directory in the image, /Ampel/DIR (default: NAME, lower case)",
    "kind": "key type: rsa (4096 bits, the default) or ed25519",
    "dry": DRY_HELP,
})
def keys(c, repo, alias=None, dir=None, kind="rsa", dry=False):
    """Make a repo's deploy key and add the repo to the Dockerfile and environment.yml.

    Follows the recipe's convention: generates deploy-keys/id_rsa.<alias>
    (unencrypted, as the runbook says; the recipe's RUN makes the `Host
    github-<alias>` entry from the key's name), adds `git clone
    git@github-<alias>:<org>/<repo>.git /Ampel/<dir>` after the last clone line and
    the `- -e` / `- /Ampel/<dir>` pair to environment.yml's pip section, keeping
    every other byte. Prints the public key and the page to paste it into.
    Re-running changes nothing.
    """
    from ..operations import keys as owner

    return owner.keys(c, repo=repo, alias=alias, dir=dir, kind=kind, dry=dry)


@task(help={**STEP_HELP, "force": "build even when no runbook condition makes a new image necessary"})
@run_options("verbose")
def image(c, version=None, force=False, dry=False):
    """Build and label the Ampel image, only when the runbook says it is necessary.

    Necessary if a repo was added to the Dockerfile, or dependencies or
    console_scripts entry points changed in any repo (setup.py, setup.cfg,
    pyproject.toml, environment.yml) since the commits recorded in the previous
    image's labels. Otherwise the previous image is reused under the new tag.
    The deploy keys live only in the Dockerfile's clone stage, which is never
    tagged or pushed.
    """
    from ..steps import runner

    return runner.task(c, "image", version=version, dry=dry, force=("image",) if force else ())


@task(help={**STEP_HELP, "skip_tests": SKIP_TESTS_HELP})
@run_options("skip_tests", "verbose")
def test(c, version=None, dry=False):
    """Run each Ampel repo's unit tests in the image and at the commits that will run.

    The runbook's first step, on this machine, before anything is pushed or
    changed on a host: `docker run` of the image (built here, or pulled from
    the registry by its recorded digest), each repo's tree replaced by the
    commit `src` will bring its host copy to, then pytest in /Ampel/<repo>
    (ampel.tests.command). Skipped when these tests already passed for this
    image and these commits (recorded in the manifests on the service host).
    """
    from ..steps import runner

    return runner.task(c, "test", version=version, dry=dry)


@task(help={**STEP_HELP, "skip_tests": SKIP_TESTS_HELP})
@run_options("verbose", "skip_tests")
def push(c, version=None, dry=False):
    """Publish the image to the private registry on 127.0.0.1, digest verified.

    Starts the registry as the runbook does but listening on loopback by itself
    (`docker run -d --network host -e REGISTRY_HTTP_ADDR=127.0.0.1:5000 -e
    REGISTRY_STORAGE_DELETE_ENABLED=true --restart=always --name registry
    registry:2`: no Docker port mapping, see moby/moby#45610; deletes enabled for
    prune): running is fine, stopped is restarted, a port held by anything
    else is an error naming it. Tags localhost:5000/ampel:VERSION, pushes with
    progress, and checks the digest the registry serves. Skips when the registry
    already has the image's digest.
    """
    from ..steps import runner

    return runner.task(c, "push", version=version, dry=dry)
