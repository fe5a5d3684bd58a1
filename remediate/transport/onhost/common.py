"""What every operation remediate does on a host shares: the answer it builds, hashing, new private files, and the
refusal of another user's link among a path's folders.

The files of this folder are joined, in onhost.PARTS order, into the one text that runs on the host as
`python3 -I -S -c TEXT` (see onhost/__init__.py): Python 3.6 or later, only its built-in modules, no newer syntax.
Their `from remediate...` lines are dropped there (one namespace on the host): they are for linting and for tests.
"""

import os
import stat

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
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)


def _sum(path, answer):
    """`sha256sum < path` for a script: the digest, or None and the exit code the shell would give (2: the
    redirection failed, 1: sha256sum could not read, as with a folder), the reason said."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        answer.e("sh: cannot open %s: %s\n" % (path, _why(e)))
        return None, 2
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


def _why(error):
    return error.strerror or str(error)


def _new_file(path, answer):
    """Path created as a new file (O_EXCL, O_NOFOLLOW: never a name found there, a link or
    anything else, and never opened through one), private (0600); an open descriptor, or None with the reason said."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        answer.e("sh: cannot create %s: %s\n" % (path, _why(e)))
        return None


def _private_temp(directory, answer):
    """A new file named .remediate-tmp.<pid> in directory (_new_file); its name and an open
    descriptor, or (None, None) with the reason said."""
    tmp = (directory or "/") + "/.remediate-tmp.%d" % os.getpid()
    fd = _new_file(tmp, answer)
    return (tmp, fd) if fd is not None else (None, None)


def _facts(st):
    return "%o %d %d" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def _foreign_link(path, answer):
    """FOREIGN_LINK when a folder in path is a symbolic link neither root nor this user owns, else None."""
    at = "" if path.startswith("/") else "."
    for part in path.lstrip("/").split("/")[:-1]:
        at = at + "/" + part
        try:
            st = os.lstat(at)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
            answer.e("%s, a folder in the path, is a symbolic link owned by uid %d; refusing to follow it\n"
                     % (at, st.st_uid))
            return FOREIGN_LINK
    return None



def _copy_p(src, dst_fd, st):
    """cp -p's content, owner (as far as allowed), mode and times, onto an open descriptor."""
    fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            _write_all(dst_fd, chunk)
    finally:
        os.close(fd)
    try:
        os.fchown(dst_fd, st.st_uid, st.st_gid)
    except OSError:
        try:
            os.fchown(dst_fd, -1, st.st_gid)
        except OSError:
            pass
    os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))


