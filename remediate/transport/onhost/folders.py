"""The folders remediate keeps its own files in on a host (a run's before-images and journal, the lock), and the
lock: each made private (0700) when absent, and refused (exit 11) when another user could swap what is in it."""

import os
import stat

from remediate.transport.onhost.common import _folder, _made, _read_all, _why, _write_all

#: The exit code of a folder refused.
REFUSED = 11


def take_lock(args, data, answer):
    """Take the lock $1: make its folder (0700) if absent, refuse it (11) if it is a link, someone else's or writable
    by others (checked on the open folder, not its name); then create the lock (O_EXCL, in that open folder) with
    stdin, or print its holder (4); 5 with the reason otherwise."""
    path = args[0]
    folder, name = path.rsplit("/", 1) if "/" in path else (".", path)
    folder = folder or "/"
    old = os.umask(0o077)
    try:
        made = _made(folder, answer)  # never through another user's link among the folders above
        if made:
            return made
        parent, base = _folder(folder, answer)
        if parent is None:
            return base
        try:
            try:
                is_link = stat.S_ISLNK(os.lstat(base, dir_fd=parent).st_mode)
            except OSError:  # renamed away by someone else since it was made or found
                return _refuse(folder, "it was replaced while remediate checked it", answer)
            if is_link:
                return _refuse(folder, "it is a symbolic link", answer)
            dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as e:
            answer.e("sh: 1: cd: can't cd to %s: %s\n" % (folder, _why(e)))
            return 5
        finally:
            os.close(parent)
        try:
            why = _unsafe(os.fstat(dir_fd))
            if why:
                return _refuse(folder, why, answer)
            return _create_lock(dir_fd, name, data, answer)
        finally:
            os.close(dir_fd)
    finally:
        os.umask(old)


def _create_lock(dir_fd, name, data, answer):
    def holder():
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as e:
            answer.e("cat: %s: %s\n" % (name, _why(e)))
            return 4
        try:
            answer.o(_read_all(fd))
        finally:
            os.close(fd)
        return 4

    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    except FileExistsError:
        return holder()
    except OSError as e:
        answer.e("sh: cannot create %s: %s\n" % (name, _why(e)))
        return 5
    try:
        _write_all(fd, data)
    except OSError as e:
        answer.e("cat: write error: %s\n" % _why(e))
        return holder() if os.fstat(fd).st_size > 0 else 5
    finally:
        os.close(fd)
    return 0


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
    except FileExistsError:
        why = _not_private(os.lstat(name, dir_fd=fd))
        if why:
            return _refuse(run, why, answer)
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

