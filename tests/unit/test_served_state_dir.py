"""The SQLite served state's directory is its owner's only (it sits at a predictable path in
a memory filesystem every local user can write to): created 0700, and one that another user
made, or that others may write to, is refused with a message naming it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from serving.feedback import ServedList
from serving.served_state import SqliteState, UnsafeStateDir, open_served_state, sqlite_path
from tests.conftest import tiny_settings
from tests.unit.test_served_state import served

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_directory_and_its_files_are_the_owners_only(tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path / "var", serving={"workers": 2})
    path = sqlite_path(settings)
    os.umask(old := os.umask(0o022))  # the usual umask: new files 0644 unless made private
    try:
        state = open_served_state(settings)
        try:
            first: ServedList = served("r1")
            state.lists.add(first)
            assert state.lists.get("r1") is not None
            assert path.parent.stat().st_uid == os.geteuid()
            assert _mode(path.parent) == 0o700, oct(_mode(path.parent))
            for f in path.parent.iterdir():  # the database, its WAL and shared memory
                assert _mode(f) & 0o077 == 0, f"{f.name} is {oct(_mode(f))}"
        finally:
            state.close()
    finally:
        os.umask(old)
        for f in path.parent.glob("*"):
            f.unlink()
        path.parent.rmdir()


def test_a_directory_made_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can make a directory owned by another user")
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)  # nobody: an attacker who got there first
    with pytest.raises(UnsafeStateDir, match="owned by uid 65534"):
        SqliteState(planted / "served_state.sqlite")
    assert list(planted.iterdir()) == []  # nothing was written into it


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_a_directory_others_may_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafeStateDir, match="writable by"):
        SqliteState(shared / "served_state.sqlite")
    assert list(shared.iterdir()) == []


def test_a_symlink_in_place_of_the_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeStateDir, match="symbolic link"):
        SqliteState(tmp_path / "link" / "served_state.sqlite")


def test_an_own_directory_from_before_is_tightened(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    old.chmod(0o755)  # what earlier versions made
    st = SqliteState(old / "served_state.sqlite")
    st.close()
    assert _mode(old) == 0o700
