"""A read-only home and an unwritable index folder give a message and a fix, not a traceback.

Defect covered: 9.  Tests run as root here, and root ignores permission bits, so a
read-only home is a read-only bind mount of it in a private mount namespace
(``unshare -m``); the rest of the machine never sees it.  Where no mount is possible
the cases are skipped with the reason."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import assert_clean_failure, clone_home, kgrag, readonly_prefix


@pytest.fixture
def ro_home(trained, tmp_path, need_mount):
    s, manifest = trained
    return clone_home(s.home, tmp_path / "home"), manifest


@pytest.mark.parametrize("args", [
    ["ingest", "{manifest}"],
    ["kg", "build"],
    ["train", "--epochs", "1"],
    ["kg", "show"],
    ["db", "start"],
    ["curate", "export", "{tmp}/edges.csv"],
], ids=lambda a: " ".join(a[:2]))
def test_d09_read_only_home(ro_home, tmp_path, args):
    home, manifest = ro_home
    argv = [a.format(manifest=manifest, tmp=tmp_path) for a in args]
    r = kgrag(home, *argv, prefix=readonly_prefix(home))
    assert_clean_failure(r, "read-only", str(home))


def test_d09_unwritable_index_folder(ro_home):
    home, _ = ro_home
    r = kgrag(home, "index", "build", prefix=readonly_prefix(home / "indexes"))
    assert_clean_failure(r, "read-only", "indexes")
    kgrag(home, "db", "stop")
