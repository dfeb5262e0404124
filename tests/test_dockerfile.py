"""`keys` edits the Dockerfile and environment.yml keeping every other byte."""
from ampel_tasks import dockerfile

DOCKERFILE = """FROM base AS clone
COPY deploy-keys /root/.ssh
RUN git clone git@github-ampel-core:AmpelProject/ampel-core.git /Ampel/ampel-core
RUN git clone git@github-ampel-base:AmpelProject/ampel-base.git /Ampel/ampel-base

FROM base
COPY --from=clone /Ampel /Ampel
"""

ENV = """name: ampel
channels:
  - ampelproject
dependencies:
  - python=3.6
  - pip:
    - -e
    - /Ampel/ampel-core
    - -e
    - /Ampel/ampel-base
"""


def test_clone_lines_name_repos_and_aliases():
    lines = dockerfile.clone_lines(DOCKERFILE)
    assert [(l.repo, l.alias, l.dest) for l in lines] == [
        ("ampel-core", "github-ampel-core", "/Ampel/ampel-core"),
        ("ampel-base", "github-ampel-base", "/Ampel/ampel-base"),
    ]


def test_clone_line_added_after_the_last_one_once():
    line = "git clone git@github-ampel-contrib-foo:AmpelProject/ampel-contrib-foo.git /Ampel/ampel-contrib-foo"
    new = dockerfile.add_clone_line(DOCKERFILE, line, "ampel-contrib-foo")
    assert new.replace("RUN " + line + "\n", "") == DOCKERFILE
    assert new.index("ampel-contrib-foo") > new.index("ampel-base.git") and new.index("ampel-contrib-foo") < new.index("FROM base\n")
    assert dockerfile.add_clone_line(new, line, "ampel-contrib-foo") == new


def test_pip_pair_added_to_the_pip_section_once():
    new = dockerfile.add_pip_editable(ENV, "/Ampel/ampel-contrib-foo")
    assert new == ENV + "    - -e\n    - /Ampel/ampel-contrib-foo\n"
    assert dockerfile.add_pip_editable(new, "/Ampel/ampel-contrib-foo") == new
