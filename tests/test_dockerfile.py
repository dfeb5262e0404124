"""The image recipe as Ampel-core v0.3.5 writes it: which repos it clones through
which deploy key, and the byte-preserving edits `keys` makes.

The Dockerfile below is ours, with the features of the real v0.3.5 recipe: keys
ADDed as deploy-keys/id_rsa*, the ssh config generated in a RUN from the key
names, a repo of another GitHub organisation, aliases that differ from the
directories, a commented-out clone, a multi-stage build with COPY --from.
"""
from pathlib import Path
from types import SimpleNamespace

import pytest

from ampel_tasks.facts import build, dockerfile
from ampel_tasks.config.defaults import DEFAULTS
from ampel_tasks.config.errors import DeployError

DOCKERFILE = r"""# Create environment from official image
FROM continuumio/miniconda:4.3.27 AS conda-base
COPY base-environment.yml /
RUN conda env create --file /base-environment.yml

FROM conda-base AS conda
RUN mkdir /root/.ssh/
ADD deploy-keys/id_rsa* /root/.ssh/
RUN chmod 700 /root/.ssh/id_rsa*
RUN touch /root/.ssh/known_hosts
RUN ssh-keyscan github.com >> /root/.ssh/known_hosts
RUN find /root/.ssh/ -type f \( -iname 'id_rsa*' -and -not -iname '*.pub' \) | cut -d. -f 3 | while read repo; do \
echo "Host github-$repo" >> /root/.ssh/config; \
echo "    HostName github.com" >> /root/.ssh/config; \
echo "    User git" >> /root/.ssh/config; \
echo "    IdentityFile /root/.ssh/id_rsa.$repo" >> /root/.ssh/config; \
done
RUN mkdir /Ampel
RUN git clone git@github-ampel:AmpelProject/Ampel-core.git /Ampel/ampel-core
RUN git clone git@github-ampel-base:AmpelProject/Ampel-base.git /Ampel/ampel-base
RUN git clone git@github-ampel-ztfbh:robertdstein/Ampel-ZTFbh.git /Ampel/ampel-contrib-ztfbh
# RUN git clone git@github-ampel-old:AmpelProject/Ampel-old.git /Ampel/ampel-old
RUN git clone git@github-ampel-contrib-hu:AmpelProject/ampel-contrib-hu.git /Ampel/ampel-contrib-hu
RUN git clone git@github-ampel-contrib-neutrino:AmpelProject/Ampel-Neutrino.git /Ampel/ampel-contrib-neutrino

COPY environment.yml /
RUN conda env create --file /environment.yml

FROM alpine:3.7
COPY --from=conda /opt/conda/envs /opt/conda/envs
COPY --from=conda /Ampel /Ampel
VOLUME ["/Ampel"]
ADD docker-entrypoint.sh /
ENTRYPOINT ["/docker-entrypoint.sh"]
"""

ENV = """name: ampel
channels:
  - ampelproject
  - conda-forge
dependencies:
  - python>=3.6
  - pymongo
  - pip:
    - -e
    - /Ampel/ampel-core
    - -e
    - /Ampel/ampel-base
"""

FIVE = [
    ("ampel", "AmpelProject", "Ampel-core", "/Ampel/ampel-core"),
    ("ampel-base", "AmpelProject", "Ampel-base", "/Ampel/ampel-base"),
    ("ampel-ztfbh", "robertdstein", "Ampel-ZTFbh", "/Ampel/ampel-contrib-ztfbh"),
    ("ampel-contrib-hu", "AmpelProject", "ampel-contrib-hu", "/Ampel/ampel-contrib-hu"),
    ("ampel-contrib-neutrino", "AmpelProject", "Ampel-Neutrino", "/Ampel/ampel-contrib-neutrino"),
]


def settings(git_host="github.com"):
    source = dict(DEFAULTS["ampel"]["source"], git_host=git_host)
    return SimpleNamespace(source=source)


def test_the_real_recipes_five_repos_aliases_orgs_and_directories():
    lines = dockerfile.clone_lines(DOCKERFILE)
    assert [(dockerfile.key_alias(l.alias, "github-{alias}"), l.org, l.repo, l.dest) for l in lines] == FIVE


def test_a_commented_clone_is_not_a_repo():
    assert all(l.repo != "Ampel-old" for l in dockerfile.clone_lines(DOCKERFILE))


def test_repos_are_named_by_directory_and_keyed_by_alias(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    keys = tmp_path / "deploy-keys"
    keys.mkdir()
    for alias, *_ in FIVE:
        (keys / f"id_rsa.{alias}").write_text("key")
        (keys / f"id_rsa.{alias}.pub").write_text("pub")
    found = build.repos(tmp_path, settings())
    assert [(r.name, r.key.name, r.url) for r in found][:3] == [
        ("ampel-core", "id_rsa.ampel", "git@github-ampel:AmpelProject/Ampel-core.git"),
        ("ampel-base", "id_rsa.ampel-base", "git@github-ampel-base:AmpelProject/Ampel-base.git"),
        ("ampel-contrib-ztfbh", "id_rsa.ampel-ztfbh", "git@github-ampel-ztfbh:robertdstein/Ampel-ZTFbh.git"),
    ]
    # what the recipe's RUN generates inside the build, pointing at the local keys
    text = build.ssh_config_text(tmp_path, settings())
    assert f"Host github-ampel\n  HostName github.com\n  User git\n  IdentityFile {keys}/id_rsa.ampel\n" in text
    assert text.count("Host github-") == 5 and ".pub" not in text


def test_a_clone_without_its_key_names_the_keys_command(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "deploy-keys").mkdir()
    with pytest.raises(DeployError) as e:
        build.repos(tmp_path, settings())
    assert "deploy-keys/id_rsa.ampel is missing" in str(e.value)
    assert "invoke keys --repo AmpelProject/Ampel-core --alias ampel --dir ampel-core" in str(e.value)


def test_clone_line_added_after_the_last_one_once():
    line = "git clone git@github-ampel-contrib-foo:AmpelProject/ampel-contrib-foo.git /Ampel/ampel-contrib-foo"
    new = dockerfile.add_clone_line(DOCKERFILE, line, "/Ampel/ampel-contrib-foo")
    assert new.replace("RUN " + line + "\n", "") == DOCKERFILE
    assert new.index("ampel-contrib-foo.git") > new.index("Ampel-Neutrino.git") > 0
    assert new.index("ampel-contrib-foo.git") < new.index("COPY environment.yml")
    assert dockerfile.add_clone_line(new, line, "/Ampel/ampel-contrib-foo") == new


def test_pip_pair_added_to_the_pip_section_once():
    new = dockerfile.add_pip_editable(ENV, "/Ampel/ampel-contrib-foo")
    assert new == ENV + "    - -e\n    - /Ampel/ampel-contrib-foo\n"
    assert dockerfile.add_pip_editable(new, "/Ampel/ampel-contrib-foo") == new


def test_an_alias_outside_the_pattern_is_refused():
    with pytest.raises(DeployError):
        dockerfile.key_alias("gitlab-ampel", "github-{alias}")
