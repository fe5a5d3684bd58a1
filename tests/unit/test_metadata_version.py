"""contract.entrypoints.version: importlib.metadata.version's answer read from the METADATA file, or None wherever that
reading cannot vouch for it (the stand-in in remediate.deferred then asks the real module)."""

from __future__ import annotations

import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from remediate.contract.entrypoints import version


def dist(site: Path, folder: str, name: str, ver: str, *, file: str = "METADATA") -> Path:
    info = site / folder
    info.mkdir(parents=True)
    (info / file).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n\nVersion: not-a-header\n")
    return info


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_the_first_distribution_of_that_name_on_the_path_gives_the_version_importlib_metadata_gives(
        site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist(site, "Zq_Widget.Kit-2.5.dist-info", "Zq-Widget.Kit", "2.5")
    later = tmp_path / "later"
    dist(later, "zq_widget_kit-9.0.dist-info", "zq-widget-kit", "9.0")
    monkeypatch.setattr(sys, "path", [*sys.path, str(later)])
    for name in ("zq-widget.kit", "Zq_Widget_Kit", "zq--widget..kit"):
        assert version(name) == "2.5" == metadata.version(name)
    dist(site, "zq_gadget-1.0.egg-info", "zq-gadget", "1.0", file="PKG-INFO")
    assert version("zq-gadget") == "1.0" == metadata.version("zq-gadget")
    assert version("paramiko") == metadata.version("paramiko")  # an installed one


def test_what_this_reading_cannot_vouch_for_is_left_to_importlib_metadata(site: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert version("zq-nowhere") is None  # no such package: importlib.metadata says so, with its own error
    dist(site, "zq_twice-1.0.dist-info", "zq-twice", "1.0")
    dist(site, "Zq.Twice-2.0.dist-info", "zq-twice", "2.0")
    assert version("zq-twice") is None  # two in one folder: which comes first is listdir's order
    (site / "zq_bare-1.0.dist-info").mkdir()
    assert version("zq-bare") is None  # no METADATA
    zipped = tmp_path / "plugins.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("zq_zipped-3.0.dist-info/METADATA", "Name: zq-zipped\nVersion: 3.0\n")
    monkeypatch.syspath_prepend(str(zipped))
    assert version("paramiko") is None and metadata.version("zq-zipped") == "3.0"  # a zip first on the path


def test_a_finder_that_gives_distributions_of_its_own_is_left_to_importlib_metadata(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Finder:
        @staticmethod
        def find_distributions(context: object = None) -> list[object]:
            return []

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    assert version("paramiko") is None


def test_a_folder_on_the_path_this_process_may_not_list_is_left_to_importlib_metadata(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0711 folder on PYTHONPATH (another user's): importlib.metadata passes over it; this reading cannot, so it
    answers None (the real module answers) rather than letting PermissionError out of `import paramiko`."""
    import os

    from remediate.contract import entrypoints
    dist(site, "zq_widget-2.5.dist-info", "zq-widget", "2.5")
    listdir = os.listdir

    def refused(path: str = ".") -> list[str]:
        if os.fspath(path) == str(site):
            raise PermissionError(13, "Permission denied", str(site))
        return listdir(path)
    monkeypatch.setattr(os, "listdir", refused)
    assert version("zq-widget") is None and version("paramiko") is None
    monkeypatch.setattr(entrypoints, "_folders", {})  # nothing remembered from before
    assert entrypoints._walk() is None
