"""Fixtures of the reliability suite (the corpus and the trained home are session
fixtures in tests/conftest.py, shared with the security tests)."""

from __future__ import annotations

import pytest


@pytest.fixture
def need_mount():
    from tests.reliability.helpers import mount_unavailable

    why = mount_unavailable()
    if why:
        pytest.skip(f"no tiny or read-only filesystem can be mounted here: {why}")
