"""Which secrets the `secrets` step copies, from the listing on burst (pure)."""
import hashlib

import pytest

from ampel_tasks.errors import DeployError
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
