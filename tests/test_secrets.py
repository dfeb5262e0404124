"""Which secrets the `secrets` step copies, from the listing on burst (pure)."""
import hashlib

import pytest

from ampel_tasks.config.errors import DeployError
from ampel_tasks.steps.secrets import parse_remote, to_copy


def test_secrets_to_copy_are_those_that_differ_or_are_not_private():
    same = hashlib.sha256(b"a").hexdigest()
    listing = (f"{same} ampel 600 secrets/a.txt\n{same} ampel 640 secrets/b.txt\n"
               f"{'0' * 64} ampel 600 secrets/c.txt\nDIR ampel 755\n")
    remote, wrong = parse_remote(listing, "ampel")
    assert wrong == {"secrets/b.txt": "owner ampel, mode 640", "secrets/": "directory owner ampel, mode 755"}
    wanted = {"a": "secrets/a.txt", "b": "secrets/b.txt", "c": "secrets/c.txt", "d": "secrets/d.txt"}
    local = {"a": b"a", "b": b"a", "c": b"c"}
    with pytest.raises(DeployError, match="d is nowhere"):
        to_copy(wanted, local, remote, wrong, lambda name, rel: DeployError(f"{name} is nowhere"))
    del wanted["d"]
    assert to_copy(wanted, local, remote, wrong, None) == [("b", "secrets/b.txt"), ("c", "secrets/c.txt")]
    assert to_copy({"a": "secrets/a.txt"}, {"a": b"a"}, remote, wrong, None) == [("the secrets directory", "secrets/")]


def test_what_a_host_holds_of_the_secrets_is_one_command_and_parsed():
    from ampel_tasks.steps.secrets import held_command, parse_remote

    cmd = held_command("/home/ampel/dryrun", ["secrets/mongo-root-password.txt", "secrets/a b.txt"])
    assert cmd == ("cd /home/ampel/dryrun 2>/dev/null && for f in secrets/mongo-root-password.txt 'secrets/a b.txt'; "
                   "do test -f \"$f\" && echo \"$(sha256sum < \"$f\" | cut -d' ' -f1) $(stat -c '%U %a' \"$f\") $f\"; "
                   "done; stat -c 'DIR %U %a' secrets 2>/dev/null; true")
    out = "1f2e ampel 600 secrets/mongo-root-password.txt\n3c4d ampel 644 secrets/a b.txt\nDIR ampel 700\n"
    assert parse_remote(out, "ampel") == ({"secrets/mongo-root-password.txt": "1f2e", "secrets/a b.txt": "3c4d"},
                                          {"secrets/a b.txt": "owner ampel, mode 644"})
