"""What every operation remediate does on a host shares: the answer it builds, hashing, new private files, and the
refusal of another user's link among a path's folders.

The files of this folder are joined, in onhost.PARTS order, into the one text that runs on the host as
`python3 -I -S -c TEXT` (see onhost/__init__.py): Python 3.6 or later, only its built-in modules, no newer syntax.
Their `from remediate...` lines are dropped there (one namespace on the host): they are for linting and for tests.
"""

import stat

try:  # the built-in module os wraps: importing os (os.path, os.environ, _collections_abc) costs each agent 1 ms
    import posix
except ImportError:
    import os as posix  # type: ignore[no-redef]
#: What every part calls os: the built-in module on a POSIX host. Not os.path, os.environ or os.execvp (os's own).
os = posix

try:  # the built-in module: hashlib would load OpenSSL, a few ms of the agent's start on every host
    from _sha256 import sha256 as _new_sha256  # type: ignore[import-not-found]
except ImportError:
    try:
        from _sha2 import sha256 as _new_sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256 as _new_sha256

#: argv[0] of a request for one of the operations below rather than a command: no program is named by "".
OPERATION = ""
#: The exit code of an operation that found another user's link among its path's folders.
FOREIGN_LINK = 12
#: The most of a command's stdout (and of its stderr) the agent keeps: one byte past the controller's bound
#: (agent.MAX_OUTPUT), enough to say it was passed. Past it the agent stops reading that stream and closes it, so
#: the command gets SIGPIPE as in a session the controller closed; the host's memory stays bounded.
MAX_KEPT = 16 * 1024 * 1024 + 1
#: A run's journal copies this agent wrote whole, by (device, inode): (the size this agent's writes left, the bytes
#: appended since). Only these are appended to (_journal), while they keep that size and under APPENDED times the
#: newest record, as on the controller (runrecord.KeptFile).
_WHOLE = {}  # type: dict[tuple[int, int], tuple[int, int]]
APPENDED = 16



class Answer:
    def __init__(self):
        self.out = []
        self.err = []

    def o(self, data):
        self.out.append(data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape"))

    def e(self, text):
        self.err.append(text.encode("utf-8", "surrogateescape"))


def _sha256_fd(fd):
    h = _new_sha256()
    os.lseek(fd, 0, 0)  # SEEK_SET
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)


def _sum(dir_fd, name, path, answer):
    """`sha256sum < path` for a script, of name in the open folder (a regular file, never anything else opened): the
    digest, or None and the exit code the shell would give (2: the redirection failed, 1: not a regular file)."""
    try:
        fd, _ = _pinned(dir_fd, name, True)
    except OSError as e:
        answer.e("sh: cannot open %s: %s\n" % (path, _why(e)))
        return None, 2
    if fd is None:
        answer.e("sha256sum: -: not a regular file\n")
        return None, 1
    try:
        return _sha256_fd(fd), 0
    except OSError as e:
        answer.e("sha256sum: -: %s\n" % _why(e))
        return None, 1
    finally:
        os.close(fd)


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _discard(dir_fd, name):
    """name removed from its open folder if it is there; quietly (a leftover temporary or copy: what failed, if
    anything, is what the answer says)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _why(error):
    return error.strerror or str(error)


def _new_file(path, answer, dir_fd=None):
    """Path created as a new file (O_EXCL, O_NOFOLLOW: never a name found there, a link or
    anything else, and never opened through one), private (0600); an open descriptor, or None with the reason said."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as e:
        answer.e("sh: cannot create %s: %s\n" % (path, _why(e)))
        return None


def _private_temp(dir_fd, answer):
    """A new file named .remediate-tmp.<pid>.<random> in the open folder (_new_file); its name and an open
    descriptor, or (None, None) with the reason said. The random part: another user who can write the folder, and
    sees the agent's pid, cannot plant the name first and so stop the write (nor can a name a killed agent left)."""
    tmp = ".remediate-tmp.%d.%s" % (os.getpid(), os.urandom(6).hex())
    fd = _new_file(tmp, answer, dir_fd)
    return (tmp, fd) if fd is not None else (None, None)


def _facts(st):
    return "%o %d %d" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


_O_PATH = getattr(os, "O_PATH", 0)
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: The most symbolic links followed in one path, as the kernel's own bound.
_MAX_LINKS = 40


def _folder(path, answer, private=False):
    """The folder holding path's last name, opened one name at a time from / (or .), never by its whole name: a link
    among the folders is followed only when root or this user owns it, pinned (O_PATH) while its owner is checked and
    it is read, so a folder swapped meanwhile leads nowhere. private: the folder must also be this user's and writable
    by no one else (a run's own files). (descriptor, last name), or (None, exit code) with the reason said (FOREIGN_LINK;
    3 absent; 2 otherwise). Everything done there afterwards goes through the descriptor."""
    fd = os.open("/" if path.startswith("/") else ".", _O_DIR)
    todo = [p for p in path.split("/")[:-1] if p and p != "."]
    at, hops = "" if path.startswith("/") else ".", 0
    try:
        while todo:
            part = todo.pop(0)
            at = at + "/" + part
            try:
                step = os.open(part, _O_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                target = _link(fd, part, at, e, answer)
                if target is None or isinstance(target, int):
                    os.close(fd)
                    return None, target or FOREIGN_LINK
                hops += 1
                if hops > _MAX_LINKS:
                    answer.e("%s: too many levels of symbolic links\n" % path)
                    os.close(fd)
                    return None, 2
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _O_DIR)
                todo[:0] = [p for p in target.split("/") if p and p != "."]
                continue
            os.close(fd)
            fd = step
        if private and _not_ours(os.fstat(fd), path, answer):
            os.close(fd)
            return None, 2
    except BaseException:
        os.close(fd)
        raise
    return fd, path.rsplit("/", 1)[-1]


def _made(path, answer):
    """Make each absent folder of path (mode 0777 less the umask), one name at a time in its parent opened as _folder
    opens it: never through a link another user owns; the parent synced after each one made (_named). 0, or the exit
    code with the reason said."""
    parts = [p for p in path.split("/") if p and p != "."]
    lead = "/" if path.startswith("/") else ""
    for i in range(1, len(parts) + 1):
        at = lead + "/".join(parts[:i])
        fd, name = _folder(at, answer)
        if fd is None:
            return name
        try:
            os.mkdir(name, dir_fd=fd)
        except FileExistsError:
            continue
        except OSError as e:
            answer.e("mkdir: cannot create directory '%s': %s\n" % (at, _why(e)))
            return 1
        else:
            if not _named(fd, name, at, answer):  # its name on disk before anything kept in it is answered for
                return 1
        finally:
            os.close(fd)
    return 0


def _named(dir_fd, name, path, answer):
    """Whether the folder name, just made in the open folder, is on disk there (_folder_synced); else it is removed
    again, so that a retry makes it, and syncs it, anew."""
    if _folder_synced(dir_fd, path, answer):
        return True
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        pass
    return False


def _link(fd, part, at, error, answer):
    """The target of the link part in fd, when root or this user owns it; None when another user does (said), an
    exit code when part is absent (3) or cannot be entered (2)."""
    try:
        if _O_PATH:  # pinned: the link whose owner is checked is the link read
            pin = os.open(part, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                st, target = os.fstat(pin), (os.readlink("", dir_fd=pin) if _is_link(os.fstat(pin)) else None)
            finally:
                os.close(pin)
        else:
            st = os.lstat(part, dir_fd=fd)
            target = os.readlink(part, dir_fd=fd) if _is_link(st) else None
    except OSError as e:
        error = e
        st = target = None
    if st is None or target is None:
        answer.e("%s: %s\n" % (at, _why(error)))
        return 3 if isinstance(error, FileNotFoundError) else 2
    if st.st_uid not in (0, os.geteuid()):
        answer.e("%s, a folder in the path, is a symbolic link owned by uid %d; refusing to follow it\n"
                 % (at, st.st_uid))
        return None
    return target


def _is_link(st):
    return stat.S_ISLNK(st.st_mode)


def _not_ours(st, path, answer):
    """Whether the folder (st) of path's last name is another user's or writable by others (said)."""
    if st.st_uid == os.geteuid() and not st.st_mode & 0o022:
        return False
    answer.e("remediate: refusing to use the folder of %s: it is owned by uid %d with mode %o, not a private folder of "
             "uid %d\n" % (path, st.st_uid, stat.S_IMODE(st.st_mode), os.geteuid()))
    return True


def _pinned(dir_fd, name, follow):
    """name in the open folder opened for reading only if it is a regular file, and never opened otherwise (a device
    or a FIFO swapped in is looked at through O_PATH, not opened): (descriptor, stat), or (None, stat) when it is not
    a regular file. OSError when it is absent. follow: whether a link at name is followed."""
    flags = os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    if _O_PATH:
        pin = os.open(name, _O_PATH | flags, dir_fd=dir_fd)
        try:
            st = os.fstat(pin)
            if not stat.S_ISREG(st.st_mode):
                return None, st
            try:  # the pinned file itself, whatever its name now leads to
                fd = os.open("/proc/self/fd/%d" % pin, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # no /proc: a non-blocking open, checked below
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | flags, dir_fd=dir_fd)
        finally:
            os.close(pin)
    else:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | flags, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None, st
    return fd, st


def _copy_p(fd, dst_fd, st):
    """cp -p's content, owner (as far as allowed), mode and times, from an open descriptor onto another."""
    os.lseek(fd, 0, 0)  # SEEK_SET
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        _write_all(dst_fd, chunk)
    try:
        os.fchown(dst_fd, st.st_uid, st.st_gid)
    except OSError:
        try:
            os.fchown(dst_fd, -1, st.st_gid)
        except OSError:
            pass
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _synced(fd):
    """fd on disk now (fsync): a file's content and size, or a folder's names (after a rename, link or unlink in it).
    A copy made to undo or to keep must be whole before the change it guards is, for ext4 (delayed allocation) may
    otherwise leave it empty after a power cut while the change survives; a name changed must be there before the
    host's answer says it is. An I/O error is raised; a file system with no fsync at all (EINVAL) is left as it is."""
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (22, 95):  # EINVAL, EOPNOTSUPP: no fsync here at all
            raise


def _folder_synced(dir_fd, path, answer):
    """Whether the folder's names are on disk (_synced), after a change in it to path; else False, said as `sync` says
    it: a name changed is never answered for before it is there."""
    try:
        _synced(dir_fd)
    except OSError as e:
        answer.e("sync: %s: %s\n" % (path, _why(e)))
        return False
    return True


def _journal(journal, data, answer, append=False):
    """Whether data is now durably the file journal (0600), written only into a private folder of this user's,
    through its open descriptor (_folder): a run's journal copy, shipped with a leased lock's release
    (folders.release_lock), and the copy journal_then writes before a command (loop.py). Its temporary file is
    <name>.tmp.<pid>.<random>: a name a killed agent left (a leased retry of the run can start one with its pid) never
    stops the write. append (journal_then): added as a line to a copy this agent wrote whole (_appended), else
    written whole; the release's is always whole (the lock's retried release compares it byte for byte)."""
    dir_fd, name = _folder(journal, answer, private=True)
    if dir_fd is None:
        return False
    try:
        if append and _appended(dir_fd, name, data):
            return True
        return _replace_file(dir_fd, "%s.tmp.%d.%s" % (name, os.getpid(), os.urandom(6).hex()), name, data, answer, True,
                             _WHOLE)
    finally:
        os.close(dir_fd)


def _appended(dir_fd, name, data):
    """Whether data (a record, one line) is now durably the last line of name, a copy this agent wrote whole and
    that is still the size its writes left: a write and a sync, where a new file, its rename and the folder's sync
    cost three times the CPU. False changes nothing, or leaves a line cut short that the whole write replaces: a
    copy whose append failed is never appended to again."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        known = _WHOLE.pop((st.st_dev, st.st_ino), None)
        if known is None or not stat.S_ISREG(st.st_mode) or known[0] != st.st_size or \
                known[1] + len(data) > APPENDED * len(data):
            return False
        _write_all(fd, data)
        _synced(fd)
        _WHOLE[(st.st_dev, st.st_ino)] = (st.st_size + len(data), known[1] + len(data))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _replace_file(dir_fd, tmp, name, data, answer, durable, kept=None):
    """Whether name (in the folder dir_fd) now holds data: written whole into a new file tmp (O_EXCL, never
    followed), then renamed over name; when durable, the file and then the folder synced (_synced), so True means on
    disk wherever the folder is. A failure removes tmp and says why on answer's stderr. kept: the new file is noted
    there as _WHOLE notes it."""
    fd = _new_file(tmp, answer, dir_fd)
    if fd is None:
        return False
    renamed = False
    try:
        try:
            _write_all(fd, data)
            if durable:
                _synced(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        renamed = True
        if durable:
            _synced(dir_fd)
    except OSError as e:
        if not renamed:
            _discard(dir_fd, tmp)
        answer.e("%s: %s\n" % (name if renamed else tmp, _why(e)))
        return False
    if kept is not None:
        kept[(st.st_dev, st.st_ino)] = (len(data), 0)
    return True
