"""The inputs package after its split: inputs.playbook still offers what the rest of remediate imports from it (sizes:
test_sizes.py, for the whole package)."""

from __future__ import annotations


def test_the_playbook_module_still_offers_what_the_rest_of_remediate_imports() -> None:
    from remediate.inputs import playbook
    from remediate.inputs.binding import Playbook
    from remediate.inputs.playbook_yaml import load
    from remediate.inputs.search_path import locate

    assert (playbook.Playbook, playbook.load, playbook.locate) == (Playbook, load, locate)
