"""The operator's private folders and files (the state home): refused when another user could plant, swap or read
anything there, as ssh refuses a ~/.ssh that others can write.

A folder is trusted when it is a real folder (not a link), owned by the user remediate runs as, and writable by
no one else, and so is every folder above it (root may own those; a world-writable one needs its sticky bit, as
/tmp has, so that nobody can rename what is ours). Inside a trusted folder nobody else can plant a name, so files
there are created through a private temporary file and a rename, and read with O_NOFOLLOW."""

from __future__ import annotations

import errno
import itertools
import os
import pwd
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from remediate.errors import InputError

_trusted: set[Path] = set()
_guard = threading.Lock()


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class Untrusted(InputError):
    """A folder remediate will not trust, another user could change it: which one (path), and why."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}; remediate keeps its run journals, plan key and saved plans in its state home "
                         "and will not trust a folder another user could change",
                         hint="use a state home only you can write (XDG_STATE_HOME=DIR, a folder you own with mode "
                              "700), or fix the folder's owner and mode")
        self.path, self.why = path, why


def state_base() -> Path:
    """$XDG_STATE_HOME, or ~/.local/state (xdg_base)."""
    return xdg_base("XDG_STATE_HOME", ".local/state", "state home")


def xdg_base(variable: str, default: str, what: str) -> Path:
    """$variable, or ~/default when it is unset, empty or relative (the XDG base directory spec: a relative path there
    is to be ignored). InputError, naming what, when HOME is relative or empty too: a folder under wherever
    remediate happens to run would scatter what it keeps (a rollback from elsewhere would not find the runs' records)."""
    given = os.environ.get(variable, "")
    if os.path.isabs(given):
        return Path(given)
    named = os.environ.get("HOME")
    if named is not None and not os.path.isabs(named):  # "" too, which Python would take for /
        raise InputError(f"no {what}: HOME is {named!r}, not an absolute path, and {variable} is "
                         f"{'relative' if given else 'unset'}",
                         hint=f"set {variable} (or HOME) to an absolute path, a folder you own with mode 700")
    return Path.home() / default


def _refuse(path: Path, why: str) -> InputError:
    return Untrusted(path, why)


def _check_ancestor(path: Path, me: int) -> None:
    info = os.lstat(path)
    if info.st_uid not in (me, 0):
        raise _refuse(path, f"a folder above the state home is owned by {_owner(info.st_uid)}")
    if stat.S_ISLNK(info.st_mode):
        return  # a link owned by root or by us; where it leads is checked on the real path
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise _refuse(path, f"a folder above the state home is writable by others (mode {stat.S_IMODE(info.st_mode):o}) "
                            "without the sticky bit")


def check_folder(path: Path) -> None:
    """Raise InputError unless path is a real folder of ours that nobody else can write, under folders nobody else
    can rename it in."""
    me = os.geteuid()
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, "it is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "it is not a folder")
    if info.st_uid != me:
        raise _refuse(path, f"it is owned by {_owner(info.st_uid)}, not by {_owner(me)}")
    if info.st_mode & 0o022:
        raise _refuse(path, f"it is writable by others (mode {stat.S_IMODE(info.st_mode):o})")
    _check_above(path, me)


def _check_above(path: Path, me: int) -> None:
    """Raise InputError unless every folder above path, as named and as resolved, is one nobody else can rename
    it in (_check_ancestor); path itself need not exist."""
    given = Path(os.path.abspath(path))
    for ancestor in {*given.parents, *Path(os.path.realpath(path)).parents}:
        _check_ancestor(ancestor, me)


def folder(path: Path) -> Path:
    """path, made 0700 if missing, once it is trusted (check_folder); checked once per process. The folders above it
    that are missing are made too, 0755 (0700 under a umask of 077), never writable by others whatever the umask;
    nothing is made under a folder that would not be trusted (another user's home, kept as HOME under sudo, stays as
    it was). Each folder made here has its name synced in its parent, so that what is synced in it later is found
    after a power cut (a parent that cannot be opened to sync is left as it is)."""
    path = Path(os.path.abspath(path))
    if path in _trusted:
        return path
    with _guard:
        missing = list(itertools.takewhile(lambda p: not os.path.lexists(p), (path, *path.parents)))
        if missing:  # before anything is made: the folders above the first one missing
            _check_above(missing[-1], os.geteuid())
        for made in reversed(missing):
            try:  # the folders above it readable as usual, but never writable by others, whatever the umask
                os.mkdir(made, 0o700 if made == path else 0o755)
            except FileExistsError:
                pass  # made meanwhile, or a link or a file by that name: check_folder says which
        check_folder(path)
        for made in missing:
            try:
                sync_folder(made.parent)
            except PermissionError:
                pass
        _trusted.add(path)
    return path


def read_bytes(path: Path, *, code: bool = False) -> bytes:
    """A regular file of ours, never through a link (FileNotFoundError when absent). code: what it holds is run (on
    hosts): refused too when its mode lets others write it, as ssh refuses such an authorized_keys."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: a symbolic link; remediate never reads its state through one",
                             hint="remove it: remediate writes its state files itself") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file; refusing to read it")
        if info.st_uid != os.geteuid():
            raise InputError(f"{path}: owned by {_owner(info.st_uid)}, not by you; refusing to trust it",
                             hint="remove it: remediate writes its state files itself")
        if code and info.st_mode & 0o022:
            raise InputError(f"{path}: writable by others (mode {stat.S_IMODE(info.st_mode):o}); refusing to run it")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, sync: bool = False, scratch: str | None = None) -> None:
    """Replace path with data, 0600, atomically: a private temporary file beside it, then a rename (which replaces
    a planted link itself, never what it points to). sync: the file, then its folder, on disk before this returns,
    so that a power cut leaves this data under path, never an earlier copy or an empty one.

    scratch: the caller's own name for that temporary file (a journal's, used for each of its writes), so that no
    unused name is looked for; only in a trusted folder (nobody else can plant it), and created exclusively, so that
    two writers never share one (the second takes a name of its own)."""
    fd, tmp = _temporary(path, scratch)
    replaced = False
    try:
        try:
            _write_all(fd, data, sync=os.fsync if sync else None)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        replaced = True
        if sync:
            sync_folder(path.parent)
    except BaseException:  # Ctrl-C may land anywhere here: it must stay what is raised
        if not replaced:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def append_bytes(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Add data at the end of path, a regular file of ours, opened without following a link and never created
    (FileNotFoundError when it is gone). sync: data and the file's new size on disk before this returns. For a file
    only its own writer appends to, in a trusted folder: a kill or a power cut leaves what it held before, and at
    most a first part of data after it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise InputError(f"{path}: not a regular file of yours; refusing to write to it",
                             hint="remove it: remediate writes its state files itself")
        _write_all(fd, data, sync=os.fdatasync if sync else None)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, *, sync: Callable[[int], None] | None) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if sync is not None:
        sync(fd)


def sync_folder(folder: Path) -> None:
    """The folder's names on disk (a rename or link in it made durable)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # a file system that cannot sync a folder at all
            raise
    finally:
        os.close(fd)


def _temporary(path: Path, scratch: str | None) -> tuple[int, str]:
    """A new private file beside path (its descriptor and name): scratch when it is free, else a name of mkstemp's."""
    if scratch is not None:
        tmp = os.path.join(path.parent, scratch)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            pass  # another writer's, this moment
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")


def create_bytes(path: Path, data: bytes) -> bool:
    """Create path with data, 0600, only if it does not exist, and whole: written to a private temporary file beside
    it, then hard-linked to its name (which fails if the name exists, even as a link: never followed). A reader
    never sees it half-written. False if it exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:
            return False
        sync_folder(path.parent)
        return True
    finally:
        os.unlink(tmp)
