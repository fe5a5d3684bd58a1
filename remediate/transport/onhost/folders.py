"""The folders remediate keeps its own files in on a host (a run's before-images and journal, the lock), each made
private (0700) when absent and refused (exit 11) when another user could swap what is in it; and the lock in its
folder: taken, taken over from a holder that is gone, its lease renewed, released, shown."""

import stat

from remediate.transport.onhost.common import (
    os,
    _discard, _folder, _folder_synced, _journal, _made, _named, _new_file, _pinned, _read_all, _replace_file,
    _synced, _why, _write_all)
from remediate.transport.onhost.files import _unlink_ours

#: The exit code of a folder refused.
REFUSED = 11


def take_lock(args, data, answer):
    """Take the lock $1: make its folder (0700) if absent, refuse it (11) if it is a link, someone else's or writable
    by others (checked on the open folder, not its name); then create the lock (O_EXCL, in that open folder) with
    stdin, or print its holder and age (4, see _show); 5 with the reason otherwise.

    $2, when given: the hex of the lock's bytes as the taker saw them (a holder it may take over). Under flock on the
    open folder, the lock is replaced with stdin only if it still holds exactly those bytes and no live lease (a
    renewal or another taker came first: its holder and age, 4); an absent lock is created as above."""
    expected = bytes.fromhex(args[1]) if len(args) > 1 else None
    old = os.umask(0o077)
    try:
        dir_fd, name = _lock_folder(args[0], answer, True)
        if dir_fd is None:
            return name
        try:
            if expected is None:
                return _create_lock(dir_fd, name, data, answer)
            _flock(dir_fd)
            return _replace_lock(dir_fd, name, expected, data, answer)
        finally:
            os.close(dir_fd)
    finally:
        os.umask(old)


def renew_lock(args, data, answer):
    """Renew the lease of the lock $1 if it still carries the token $2: its mtime set to now, under flock on its
    folder (0). Else its holder and age (4), or nothing when it is gone (3): the lease is lost."""
    def renew(dir_fd, name):
        os.utime(name, dir_fd=dir_fd, follow_symlinks=False)
        return 0
    return _while_ours(args, answer, renew)


def release_lock(args, data, answer):
    """Remove the lock $1 if it carries the token $2, under flock on its folder (0); when $3 is given, stdin is first
    written durably there (the run's journal copy, common._journal), under the same flock and only after the token
    matched: an attempt fenced out never writes it (8 when it cannot be written, the lock left held). Held by someone
    else: its holder and age (4), left as it is; absent (3): the lease is lost, never taken for released."""
    def release(dir_fd, name):
        if len(args) > 2 and not _journal(args[2], data, answer):
            answer.e("remediate: cannot write the journal %s\n" % args[2])
            return 8
        os.unlink(name, dir_fd=dir_fd)
        # released on disk too: after a power cut the lock must not come back as a stale one
        return 0 if _folder_synced(dir_fd, args[0], answer) else 1
    return _while_ours(args, answer, release)


def _while_ours(args, answer, act):
    """act(dir_fd, name)'s exit code, run under flock on the lock $1's folder only while the lock carries the token
    $2; else the lock's holder and age (4), or the code of why it cannot be read (3 when it is gone)."""
    dir_fd, name = _lock_folder(args[0], answer, False)
    if dir_fd is None:
        return name
    try:
        _flock(dir_fd)
        found = _lock_now(dir_fd, name, answer)
        if not isinstance(found, tuple):
            return found
        if _token(found[0]) != args[1]:
            return _show(found, answer)
        return act(dir_fd, name)
    finally:
        os.close(dir_fd)


def show_lock(args, data, answer):
    """Read-only: the lock $1's holder and age (0, see _show), or 3 when there is none; its folder is never made."""
    dir_fd, name = _lock_folder(args[0], answer, False)
    if dir_fd is None:
        return name
    try:
        found = _lock_now(dir_fd, name, answer)
        if not isinstance(found, tuple):
            return found
        _show(found, answer)
        return 0
    finally:
        os.close(dir_fd)


def _lock_folder(path, answer, make):
    """The lock's folder open (never through another user's link among the folders above, nor a link itself), once
    it is known to be a private folder of ours, and the lock's name: (descriptor, name). Else (None, exit code), the
    reason said: 11 refused, 3 absent (make: it is made instead, 0700), 5 otherwise."""
    folder, name = path.rsplit("/", 1) if "/" in path else (".", path)
    folder = folder or "/"
    made = _made(folder, answer) if make else 0
    if made:
        return None, made
    parent, base = _folder(folder, answer)
    if parent is None:
        return None, base
    try:
        try:
            is_link = stat.S_ISLNK(os.lstat(base, dir_fd=parent).st_mode)
        except FileNotFoundError:
            if not make:
                return None, 3
            return None, _refuse(folder, "it was replaced while remediate checked it", answer)
        except OSError:  # renamed away by someone else since it was made or found
            return None, _refuse(folder, "it was replaced while remediate checked it", answer)
        if is_link:
            return None, _refuse(folder, "it is a symbolic link", answer)
        dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError as e:
        answer.e("sh: 1: cd: can't cd to %s: %s\n" % (folder, _why(e)))
        return None, 5
    finally:
        os.close(parent)
    why = _unsafe(os.fstat(dir_fd))
    if why:
        os.close(dir_fd)
        return None, _refuse(folder, why, answer)
    return dir_fd, name


def _flock(dir_fd):
    """Hold flock on the open folder until it is closed: one replace, renewal or release of its lock at a time."""
    import fcntl  # a built-in module: only where a lock changes hands
    fcntl.flock(dir_fd, fcntl.LOCK_EX)


def _lock_now(dir_fd, name, answer):
    """The lock's bytes and its age (this host's clock now less its mtime): a tuple; 3 when it is absent, 5 (said)
    when it cannot be read or is not a regular file (a FIFO or a device there is never opened: common._pinned)."""
    try:
        fd, _ = _pinned(dir_fd, name, False)
    except FileNotFoundError:
        return 3
    except OSError as e:
        answer.e("cat: %s: %s\n" % (name, _why(e)))
        return 5
    if fd is None:
        answer.e("cat: %s: not a regular file\n" % name)
        return 5
    try:
        import time  # a built-in module
        return _read_all(fd), time.time() - os.fstat(fd).st_mtime
    finally:
        os.close(fd)


def _show(found, answer):
    """A lock's holder as the taker reads it: its bytes exactly, then a last line `age=SECONDS` (a line of its own
    after a newline that is always added, so the holder's bytes can never be taken for it); 4. Whole seconds, rounded
    down: a lease is never seen lapsed early."""
    content, age = found
    answer.o(content)
    answer.o(b"\nage=%d\n" % int(age))
    return 4


def _lease(content):
    """The lease a lock's bytes carry (a dict: holder, token, seconds), or None."""
    try:
        import json  # only for a lock that changes hands or is renewed
        lease = json.loads(content.decode("utf-8")).get("lease")
    except (ValueError, AttributeError, RecursionError):  # not a JSON object: no lease (a lock of an older remediate, or empty)
        return None
    return lease if isinstance(lease, dict) else None


def _token(content):
    lease = _lease(content)
    return lease.get("token") if lease else None


def _live(content, age):
    """Whether the lock carries a lease this host's clock says is live: younger than its seconds."""
    lease = _lease(content)
    try:
        return lease is not None and age < float(lease.get("seconds"))
    except (TypeError, ValueError):
        return True  # a lease whose length cannot be read: never taken for lapsed


def _replace_lock(dir_fd, name, expected, data, answer):
    """Under the folder's flock: the lock replaced with data if it still holds exactly the bytes expected and no
    live lease (0); else its holder (4). Gone meanwhile: created as a free lock is."""
    found = _lock_now(dir_fd, name, answer)
    if found == 3:
        return _create_lock(dir_fd, name, data, answer)
    if not isinstance(found, tuple):
        return found
    if found[0] != expected or _live(*found):
        return _show(found, answer)
    tmp = ".%s.new" % name  # only a replacer holding the flock uses this name: one found is a leftover
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    return 0 if _replace_file(dir_fd, tmp, name, data, answer, True) else 5  # synced: never empty after a power cut


def _create_lock(dir_fd, name, data, answer):
    """The lock created with data (0); its holder when there is one already (4); 5 with the reason. Written whole and
    synced under a name of this taker's own first, then linked to the lock's name (which fails if it exists, even as
    a link), and the folder synced: a power cut never leaves an empty lock, nor a lock the host's answer did not
    mean (an empty one would lose a serve run's lease token, and with it its takeover). A file system without hard
    links (vfat) gets the lock created in place (O_EXCL), written and synced."""
    tmp = ".%s.%d.%s" % (name, os.getpid(), os.urandom(4).hex())
    fd = _new_file(tmp, answer, dir_fd)
    if fd is None:
        return 5
    try:
        try:
            _write_all(fd, data)
            _synced(fd)
            ours = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        try:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            if os.stat(tmp, dir_fd=dir_fd).st_nlink < 2:  # (NFS may say so of its own retried link: then it is ours)
                return _holder(dir_fd, name, answer)
        except OSError as e:
            if e.errno not in (1, 38, 95):  # EPERM, ENOSYS, EOPNOTSUPP: no hard links here
                raise
            return _create_in_place(dir_fd, name, data, answer)
        try:
            _synced(dir_fd)
        except OSError:
            _unlink_ours(dir_fd, name, ours)  # a take that fails leaves no lock behind
            raise
    except OSError as e:
        answer.e("sh: cannot create %s: %s\n" % (name, _why(e)))
        return 5
    finally:
        _discard(dir_fd, tmp)
    return 0


def _create_in_place(dir_fd, name, data, answer):
    """_create_lock where hard links cannot be made: the lock created (O_EXCL), written and synced with its folder,
    else removed again: a take that fails leaves no lock behind."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        return _holder(dir_fd, name, answer)
    ours = os.fstat(fd).st_ino
    try:
        try:
            _write_all(fd, data)
            _synced(fd)
        finally:
            os.close(fd)
        _synced(dir_fd)
    except OSError:
        _unlink_ours(dir_fd, name, ours)
        raise
    return 0


def _holder(dir_fd, name, answer):
    found = _lock_now(dir_fd, name, answer)
    if isinstance(found, tuple):
        return _show(found, answer)
    return 5 if found == 5 else 4  # not a lock that can be read (said); else gone since: held by nobody known


def private_folder(args, data, answer):
    """Make the run folder $1 and its state folder, 0700 when absent; refuse (11) either when it is a link, not a
    folder, someone else's or writable by others, having made nothing in it. The run folder is made in the state
    folder's open descriptor, once that is checked, and the name must still be that folder."""
    run = args[0] if args[0].startswith("/") else os.getcwd() + "/" + args[0]
    state, name = run.rsplit("/", 1)
    old = os.umask(0o077)
    try:
        fd = _open_state(state, answer)
        if fd < 0:
            return -fd
        try:
            return _run_folder(state, fd, name, run, answer)
        finally:
            os.close(fd)
    finally:
        os.umask(old)


def _open_state(state, answer):
    """The state folder (made when absent, with the folders above it) open, once it is known to be a real folder;
    else minus the exit code, the reason said."""
    made = _made(state, answer)  # it and the folders above, never through another user's link
    if made:
        return -made
    parent, base = _folder(state, answer)
    if parent is None:
        return -base
    try:
        try:
            found = os.lstat(base, dir_fd=parent)
        except OSError:  # renamed away by someone else since it was made or found
            return -_refuse(state, "it was replaced while remediate checked it", answer)
        if stat.S_ISLNK(found.st_mode):
            return -_refuse(state, "it is a symbolic link", answer)
        if not stat.S_ISDIR(found.st_mode):
            return -_refuse(state, "it is not a folder", answer)
        try:
            return os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError:  # swapped since, or not ours to enter: say which
            try:
                why = _not_private(os.lstat(base, dir_fd=parent))
            except OSError:
                why = "it is not a folder"
            if why:
                return -_refuse(state, why, answer)
            answer.e("sh: 1: cd: can't cd to %s\n" % state)
            return -1
    finally:
        os.close(parent)


def _run_folder(state, fd, name, run, answer):
    """The run folder made (or found, and checked) in the open state folder, which must still be the one its name
    names; the exit code."""
    found = os.fstat(fd)
    why = _unsafe(found)
    if why:
        return _refuse(state, why, answer)
    if not _same(state, found):
        return _refuse(state, "it was replaced while remediate checked it", answer)
    try:
        os.mkdir(name, dir_fd=fd)
        if not _named(fd, name, run, answer):  # named on disk before the journal and before-images kept in it
            return 1
    except FileExistsError:  # made by an earlier try, perhaps killed before its sync: synced now
        why = _not_private(os.lstat(name, dir_fd=fd))
        if why:
            return _refuse(run, why, answer)
        if not _folder_synced(fd, run, answer):
            return 1
    except OSError as e:
        if not _same(state, found):
            return _refuse(state, "it was replaced while remediate checked it", answer)
        answer.e("mkdir: cannot create directory '%s': %s\n" % (name, _why(e)))
        return 1
    if not _same(state, found):
        return _refuse(state, "it was replaced while remediate checked it", answer)
    return 0


def _not_private(st):
    """Why what lstat found is not a private folder of ours (a link, not a folder, _unsafe), or None."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    return _unsafe(st)


def _unsafe(st):
    """Why a folder found there is not one only the user remediate runs as can change, or None."""
    me = os.geteuid()
    if st.st_uid != me:
        try:
            import pwd  # a built-in module: only on this refusal
            owner = pwd.getpwuid(st.st_uid).pw_name
        except (ImportError, KeyError):
            owner = "UNKNOWN"
        return "it is owned by %s (uid %d), not by the user remediate runs as (uid %d)" % (owner, st.st_uid, me)
    if st.st_mode & 0o022:
        return "it is writable by others (mode %o)" % stat.S_IMODE(st.st_mode)
    return None


def _same(path, st):
    """Whether path itself (not through a link) is still the folder st was taken of."""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _refuse(folder, why, answer):
    answer.e("remediate: refusing to use %s: %s\n" % (folder, why))
    return REFUSED

