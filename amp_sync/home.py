"""Where amp_sync keeps its state: AMP_SYNC_HOME, else a per-user data folder; moving an old one in.

Earlier versions kept it in `.amp_sync` under the working directory, so the same sync run from
another folder started from nothing and resent every row. An old folder's state moves into the
home file by file; a file the home already has is never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from amp_sync.errors import StateError
from amp_sync.state import run_lock
from amp_sync.vault import SECRETS_FILE
from amp_sync.workspace import WORKSPACE_FILE, Workspace

APP_NAME = "amp_sync"
LEGACY_FOLDER = ".amp_sync"
STATE_FOLDER = "state"
# SQLite keeps recent commits of a database in these files beside it: they move with it.
_COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class Home:
    """The folder amp_sync keeps its state in, and where that choice comes from, in words."""

    path: Path
    origin: str


def find_home(env: Mapping[str, str] | None = None) -> Home:
    """AMP_SYNC_HOME when set, else the per-user data folder (platformdirs; XDG_DATA_HOME on Linux)."""
    env = os.environ if env is None else env
    if env.get("AMP_SYNC_HOME"):
        return Home(Path(env["AMP_SYNC_HOME"]), "set by AMP_SYNC_HOME")
    # platformdirs reads the process's environment: ~/.local/share/amp_sync on Linux,
    # ~/Library/Application Support/amp_sync on macOS, %LOCALAPPDATA%\amp_sync on Windows.
    folder = platformdirs.user_data_dir(APP_NAME, appauthor=False)
    return Home(Path(folder), "amp_sync's per-user data folder (AMP_SYNC_HOME is not set)")


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder amp_sync keeps its state in."""
    return find_home(env).path


def state_groups(folder: Path) -> tuple[tuple[Path, ...], ...]:
    """The state `folder` holds, as groups of paths relative to it that move together.

    The workspace file is one group, with the owner-only file of the keys typed into it when there
    is one; each sync's SQLite database is another, with whichever of its journal files are there.
    """
    groups: list[tuple[Path, ...]] = []
    if (folder / WORKSPACE_FILE).is_file():
        secrets = (Path(SECRETS_FILE),) if (folder / SECRETS_FILE).is_file() else ()
        groups.append((Path(WORKSPACE_FILE), *secrets))
    for db in sorted((folder / STATE_FOLDER).glob("*.sqlite")):
        if db.is_file():
            name = Path(STATE_FOLDER, db.name)
            groups.append((name, *(Path(f"{name}{s}") for s in _COMPANIONS if Path(f"{db}{s}").exists())))
    return tuple(groups)


def legacy_folder(cwd: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """The old `.amp_sync` under `cwd` when it holds state and AMP_SYNC_HOME is not set."""
    env = os.environ if env is None else env
    folder = cwd / LEGACY_FOLDER
    if env.get("AMP_SYNC_HOME") or not state_groups(folder) or _same(folder, home_dir(env)):
        return None
    return folder


@dataclass(frozen=True, slots=True)
class Moved:
    """What moving one folder's state into another did, file by file.

    Each file is named relative to both folders; a database's journal files went with it.
    """

    source: Path
    target: Path
    moved: tuple[Path, ...] = ()
    refused: tuple[tuple[Path, str], ...] = ()  # a file left in `source`, and why

    def lines(self) -> list[str]:
        """Each file's outcome, then the totals."""
        out = [f"moved {p}" for p in self.moved]
        out += [f"not moved: {p}: {why}" for p, why in self.refused]
        total = f"moved {_what(self.moved)} from {self.source} to {self.target}"
        left = f"; {_what(p for p, _ in self.refused)} left in {self.source}" if self.refused else ""
        return [*out, total + left]


def import_state(source: Path, target: Path) -> Moved:
    """Move `source`'s state into `target`, file by file, never overwriting a file `target` has."""
    if _same(source, target):
        raise StateError(f"{source} is the home folder itself: there is nothing to move")
    if not state_groups(source):
        raise StateError(
            f"there is no saved state in {source} (amp_sync looks for {WORKSPACE_FILE} and "
            f"{STATE_FOLDER}/*.sqlite)"
        )
    with _folder_lock(target):
        return _move_groups(source, target)


def adopt_legacy(cwd: Path, env: Mapping[str, str] | None = None) -> str | None:
    """Move an old `cwd/.amp_sync` into a home that has no state yet; what happened, in one line.

    None when there is nothing to move. When the home already holds state nothing moves, and
    the line says how to move the old folder's files one by one.
    """
    old = legacy_folder(cwd, env)
    if old is None:
        return None
    home = home_dir(env)
    with _folder_lock(home):
        if not state_groups(old):  # another amp_sync moved it a moment ago
            return None
        if state_groups(home):
            return (
                f"{old} holds state saved by an earlier amp_sync; it stays there because {home} "
                f"already holds state. To move its files one by one: amp-sync home --import {old}"
            )
        moved = _move_groups(old, home)
    said = f"moved {_what(moved.moved)} that an earlier amp_sync saved in {old} to {home}"
    if moved.refused:
        why = "; ".join(f"{p}: {reason}" for p, reason in moved.refused)
        return f"{said}; {_what(p for p, _ in moved.refused)} stayed ({why}): amp-sync home --import {old}"
    return f"{said}, where amp_sync now keeps its state (amp-sync home says so)"


def _move_groups(source: Path, target: Path) -> Moved:
    moved: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for group in state_groups(source):
        why = _move_group(group, source, target)
        if why is None:
            moved.append(group[0])
        else:
            refused.append((group[0], why))
    return Moved(source, target, tuple(moved), tuple(refused))


def _move_group(group: tuple[Path, ...], source: Path, target: Path) -> str | None:
    """Move one group unless `target` has any of its files; None when moved, else why not."""
    main = group[0]
    if main.parent.name != STATE_FOLDER:
        return _move_files(group, source, target)
    sync = main.stem
    try:  # no run of this sync may write either copy while it moves
        with run_lock(source, sync), run_lock(target, sync):
            return _move_files(group, source, target)
    except StateError as exc:
        return str(exc)


def _move_files(group: tuple[Path, ...], source: Path, target: Path) -> str | None:
    main = group[0]
    taken = [p for p in (main, *(Path(f"{main}{s}") for s in _COMPANIONS)) if (target / p).exists()]
    if taken:
        return f"{target / taken[0]} already exists"
    (target / main).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in group:  # the database first: a journal file must never arrive without it
        _move_file(source / path, target / path)
    if main.name == WORKSPACE_FILE:
        # Relative warehouse paths were read from the folder the app ran in: keep them pointing there.
        with contextlib.suppress(StateError):  # a broken file is the app's to report when it reads it
            Workspace(target).make_paths_absolute(source.parent.absolute())
    return None


def _move_file(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise StateError(f"cannot move {source} to {target}: {exc.strerror or exc}") from None
        shutil.move(source, target)  # another file system: copied, then removed


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder` (created owner-only if missing) while state moves into it: one mover at a time."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise StateError(
            f"cannot use {folder} for amp_sync's state: {exc.strerror or exc}. "
            "Point AMP_SYNC_HOME at a folder you can write to"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _what(files: Iterable[Path]) -> str:
    """Moved or left files in words: the workspace and the state of N syncs."""
    names = [p.name for p in files]
    syncs = sum(name != WORKSPACE_FILE for name in names)
    said = ["the workspace"] if len(names) > syncs else []
    said += [f"the state of {syncs:,} sync{'' if syncs == 1 else 's'}"] if syncs else []
    return " and ".join(said) or "nothing"
