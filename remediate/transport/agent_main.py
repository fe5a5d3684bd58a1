"""The host side of the persistent agent (see agent.py): this file's text runs as `python3 -I -S -c TEXT` on the host.

It reads commands from stdin and answers each with its exit code and output, length-framed, so that a run's
commands cost the host one Python process rather than an sshd session, a shell and its tools per command. Python
3.6 or later; only the standard library's built-in modules.

A request is a line `<token> <n> <length of argv[0]> <length of argv[1]> ...`, then each argument's bytes (UTF-8),
then the n bytes of the command's stdin. The answer is `<token> <exit code> <stdout length> <stderr length>\\n`, then both outputs. The token comes first on
stdin, never on the command line; a line without it ends the agent (exit 97), so bytes out of step are never run.

`sh -c SCRIPT NAME ARGS...` where SCRIPT is one of remediate's own scripts, pinned here by sha256, runs as the
function that does what the script does, with the same exit codes and messages; every other command, and those
scripts when asked for something the function does not do, runs as it would in a session (`sh -c` included).
tests/unit/test_agent.py runs each script and its function on the same inputs and compares what they leave.
"""

import os
import select
import stat
import sys

try:  # the built-in module: signal imports enum, a few ms more
    import _signal as signal  # type: ignore[import-not-found]
except ImportError:
    import signal

try:  # the built-in module: hashlib would load OpenSSL, a few ms of the agent's start on every host
    from _sha256 import sha256 as _new_sha256  # type: ignore[import-not-found]
except ImportError:
    try:
        from _sha2 import sha256 as _new_sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256 as _new_sha256

#: sha256 of each script's text -> the function that does what it does. A script edited without its function no
#: longer matches, so it runs as itself (tests/unit/test_agent.py fails until both agree again).
PINNED = {
    "0c9336ef9b1cd11be95508341551c448ea4e15123c2e3bd63022cb42826ee314": "read",  # transport.READ_SCRIPT
    "a87bb0493caa5bfe7320a5689420eaff08289d29f92942fbf30b24490f2f173d": "write",  # transport.WRITE_SCRIPT
    "95e622ecf815f70fbc1984d0aee8cf3fec755bf23caa50c26796f34e45e28e1c": "journal_then",  # transport.JOURNAL_THEN
    "38bcdd46d51c3356115c255a0b341c0dd15c94c26ba5cea42585c6433c5d14a0": "list_backups",  # steps.backup.LIST_SCRIPT
    "a3dabdd446ee0794bbd70dbfd920401edc5a8d6d5e0a7ed8cd3a425bc1d42181": "backup",  # steps.backup.BACKUP_SCRIPT
    "e558866b1ad1cf9cd3a7c9d7c92452daeb3d86a792d547ae72368f98f6071196": "take_lock",  # lock.TAKE_SCRIPT
    "5692e76fade3bedb07291f7c5b57ec2f7b3ee3fd6687448c2b6cac80c9214ceb": "remove",  # transport.REMOVE_SCRIPT
    "538f7620ce48b6ff710a6f92d274bfe61ed1b78f2341d1f01eddc01018f5bc88": "sha256",  # transport.SHA256_SCRIPT
    "a1856304f022cd74b478178be4aac6a62f95ef28011769e68ff985951c8193dc": "private_folder",  # transport.PRIVATE_FOLDER_SCRIPT
}

#: The most of a command's stdout (and of its stderr) the agent keeps: one byte past the controller's bound
#: (agent.MAX_OUTPUT), enough to say it was passed. Past it the agent stops reading that stream and closes it, so
#: the command gets SIGPIPE as in a session the controller closed; the host's memory stays bounded.
MAX_KEPT = 16 * 1024 * 1024 + 1


class Fallback(Exception):
    """The function does not do this case: run the script itself."""


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
    """transport._new_file: path created as a new file (O_EXCL, O_NOFOLLOW: never a name found there, a link or
    anything else, and never opened through one), private (0600); an open descriptor, or None with the reason said."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        answer.e("sh: cannot create %s: %s\n" % (path, _why(e)))
        return None


def _private_temp(directory, answer):
    """PRIVATE_TEMP: a new file named .remediate-tmp.<pid> in directory (_new_file); its name and an open
    descriptor, or (None, None) with the reason said."""
    tmp = (directory or "/") + "/.remediate-tmp.%d" % os.getpid()
    fd = _new_file(tmp, answer)
    return (tmp, fd) if fd is not None else (None, None)


def _facts(st):
    return "%o %d %d" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def _foreign_link(path, answer):
    """FOREIGN_LINKS: 12 when a folder in path is a symbolic link neither root nor this user owns, else None."""
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
            return 12
    return None


def read(args, data, answer):
    """READ_SCRIPT: "<mode> <uid> <gid>\\n<link or empty>\\n<bytes>"; 3 absent, 6 not a regular file, 7 too large."""
    path, limit = args[0], int(args[1])
    refused = _foreign_link(path, answer)
    if refused:
        return refused
    try:
        st = os.stat(path)
    except OSError:
        return 3
    if not stat.S_ISREG(st.st_mode):
        answer.e("not a regular file\n")
        return 6
    if st.st_size > limit:
        answer.e("%d bytes\n" % st.st_size)
        return 7
    link = os.path.realpath(path) if os.path.islink(path) else ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        answer.e("head: cannot open '%s' for reading: %s\n" % (path, _why(e)))
        return 1
    try:
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    answer.o("%s\n%s\n" % (_facts(st), link))
    answer.o(b"".join(chunks))
    return 0


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


def write(args, data, answer):
    """WRITE_SCRIPT: replace $1 with stdin through a private temporary file; 5 a link, 9 changed, 10 incomplete."""
    path, mode, owner, expect, backup, want = (list(args) + [""] * 6)[:6]
    refused = _foreign_link(path, answer)
    if refused:
        return refused
    ids = None
    if owner:
        uid, _, gid = owner.partition(":")
        if not (uid.isdigit() and gid.isdigit()):
            raise Fallback()  # names: let chown look them up
        ids = (int(uid), int(gid))
    if os.path.islink(path):
        answer.e("%s is a symbolic link; refusing to replace it\n" % path)
        return 5
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if expect:
        now = "absent"
        if st is not None:
            digest, code = _sum(path, answer)
            if digest is None:
                return code
            now = "%s %s" % (digest, _facts(st))
        if now != expect:
            answer.e(now + "\n")
            return 9
    if backup:  # the before-image: a new file (never a name found there, nor through a link), then copied
        fd = _new_file(backup, answer)
        if fd is None:
            return 2
        try:
            _copy_p(path, fd, os.stat(path))
        except OSError as e:
            answer.e("cp: cannot copy '%s' to '%s': %s\n" % (path, backup, _why(e)))
            return 1
        finally:
            os.close(fd)
    directory = path.rsplit("/", 1)[0] if "/" in path else "."
    tmp, fd = _private_temp(directory, answer)
    if fd is None:
        return 2
    renamed = False
    try:
        try:
            os.fchmod(fd, int(mode, 8) if mode else (stat.S_IMODE(st.st_mode) if st is not None else 0o644))
            if ids is not None:
                os.fchown(fd, *ids)
            elif st is not None:
                mine = os.fstat(fd)
                if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                    os.fchown(fd, st.st_uid, st.st_gid)
            _write_all(fd, data)
            digest = _sha256_fd(fd)
        except OSError as e:
            answer.e("%s: %s\n" % (path, _why(e)))
            return 1
        if want and digest != want:
            answer.e("the content arrived incomplete (sha256 %s)\n" % digest)
            return 10
        try:
            os.fsync(fd)
        except OSError:
            pass
        try:
            os.rename(tmp, path)
        except OSError as e:
            answer.e("mv: cannot move '%s' to '%s': %s\n" % (tmp, path, _why(e)))
            return 1
        renamed = True
    finally:
        os.close(fd)
        if not renamed:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    answer.o(digest + "\n")
    return 0


def journal_then(args, data, answer):
    """JOURNAL_THEN: the first $2 bytes of stdin durably to $1 (0600), then the command with the rest; 8 if not. A
    name found on its temporary file is left as it is; a temporary file of ours that failed is removed."""
    journal, size, rest = args[0], int(args[1]), args[2:]
    tmp = "%s.tmp.%d" % (journal, os.getpid())
    fd = _new_file(tmp, answer) if len(data) >= size else None
    if fd is not None:
        try:
            try:
                _write_all(fd, data[:size])
                try:
                    os.fsync(fd)
                except OSError:
                    pass
            finally:
                os.close(fd)
            os.rename(tmp, journal)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            answer.e("%s: %s\n" % (tmp, _why(e)))
        else:
            return run(rest, data[size:], answer)
    elif len(data) < size:
        answer.e("%s: the journal arrived incomplete\n" % tmp)
    answer.e("remediate: cannot write the journal %s\n" % journal)
    return 8


def list_backups(args, data, answer):
    """LIST_SCRIPT: "<sha256>  -" then the regular files named $1.backup-*, never a link; 3 when $1 is absent."""
    path = args[0]
    try:
        os.stat(path)
    except OSError:
        return 3
    digest, code = _sum(path, answer)
    if digest is None:
        return code
    answer.o("%s  -\n" % digest)
    directory, _, base = path.rpartition("/")
    try:
        names = os.listdir(directory if "/" in path else ".")
    except OSError:
        names = []
    prefix = base + ".backup-"
    for name in sorted(n for n in names if n.startswith(prefix)):  # the glob's * matches nothing too
        full = (directory + "/" if "/" in path else "") + name
        if os.path.isfile(full) and not os.path.islink(full):
            answer.o(full + "\n")
    return 0


def backup(args, data, answer):
    """BACKUP_SCRIPT: a private copy (cp -p) hard-linked to the first free name of $3, $3.1 ... $3.9, then prune."""
    src, want, name, old = args[0], args[1], args[2], args[3:]
    now, code = _sum(src, answer)
    if now is None:
        return code
    if now != want:
        answer.e(now + "\n")
        return 9
    directory = name.rsplit("/", 1)[0] if "/" in name else name
    tmp, fd = _private_temp(directory, answer)
    if fd is None:
        return 2
    try:
        try:
            _copy_p(src, fd, os.stat(src))
        except OSError as e:
            answer.e("cp: cannot copy '%s': %s\n" % (src, _why(e)))
            return 1
        finally:
            os.close(fd)
        made = None
        for suffix in ("", ".1", ".2", ".3", ".4", ".5", ".6", ".7", ".8", ".9"):
            try:
                os.link(tmp, name + suffix)
            except OSError:
                continue
            made = name + suffix
            break
        if made is None:
            answer.e("every name from %s to %s.9 is taken\n" % (name, name))
            return 8
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    digest, code = _sum(made, answer)
    if digest is None:
        return code
    answer.o("%s\n%s\n" % (made, digest))
    for path in old:
        if path != made and os.path.isfile(path) and not os.path.islink(path):
            try:
                os.unlink(path)
            except OSError as e:
                answer.e("rm: cannot remove '%s': %s\n" % (path, _why(e)))
                return 1
    return 0


def take_lock(args, data, answer):
    """TAKE_SCRIPT: make the lock's folder (0700) if absent, refuse it (11) if it is a link, someone else's or writable
    by others (checked on the open folder, not its name); then create the lock (O_EXCL, in that open folder) with
    stdin, or print its holder (4); 5 with the reason otherwise."""
    path = args[0]
    folder, name = path.rsplit("/", 1) if "/" in path else (".", path)
    folder = folder or "/"
    old = os.umask(0o077)
    try:
        if not os.path.lexists(folder):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError:
                pass
        if os.path.islink(folder):
            return _refuse(folder, "it is a symbolic link", answer)
        try:
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            answer.e("sh: 1: cd: can't cd to %s: %s\n" % (folder, _why(e)))
            return 5
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
    """PRIVATE_FOLDER_SCRIPT: make the run folder $1 and its state folder, 0700 when absent; refuse (11) either when
    it is a link, not a folder, someone else's or writable by others, having made nothing in it. The run folder is
    made in the state folder's open descriptor, once that is checked, and the name must still be that folder."""
    run = args[0] if args[0].startswith("/") else os.getcwd() + "/" + args[0]
    state, name = run.rsplit("/", 1)
    old = os.umask(0o077)
    try:
        parent = state.rsplit("/", 1)[0] + "/"
        if not os.path.isdir(parent):
            try:
                os.makedirs(parent)
            except OSError as e:
                answer.e("mkdir: cannot create directory '%s': %s\n" % (parent, _why(e)))
                return 1
        if not os.path.lexists(state):
            try:
                os.mkdir(state)
            except OSError as e:
                if not os.path.lexists(state):
                    answer.e("mkdir: cannot create directory '%s': %s\n" % (state, _why(e)))
                    return 1
        if os.path.islink(state):
            return _refuse(state, "it is a symbolic link", answer)
        if not os.path.isdir(state):
            return _refuse(state, "it is not a folder", answer)
        try:
            fd = os.open(state, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # swapped since, or not ours to enter: say which
            try:
                st = os.lstat(state)
            except OSError:
                return _refuse(state, "it is not a folder", answer)
            why = ("it is a symbolic link" if stat.S_ISLNK(st.st_mode) else
                   "it is not a folder" if not stat.S_ISDIR(st.st_mode) else _unsafe(st))
            if why:
                return _refuse(state, why, answer)
            answer.e("sh: 1: cd: can't cd to %s\n" % state)
            return 1
        try:
            found = os.fstat(fd)
            why = _unsafe(found)
            if why:
                return _refuse(state, why, answer)
            if not _same(state, found):
                return _refuse(state, "it was replaced while remediate checked it", answer)
            try:
                os.mkdir(name, dir_fd=fd)
            except FileExistsError:
                st = os.lstat(name, dir_fd=fd)
                why = ("it is a symbolic link" if stat.S_ISLNK(st.st_mode) else
                       "it is not a folder" if not stat.S_ISDIR(st.st_mode) else _unsafe(st))
                if why:
                    return _refuse(run, why, answer)
            except OSError as e:
                if not _same(state, found):
                    return _refuse(state, "it was replaced while remediate checked it", answer)
                answer.e("mkdir: cannot create directory '%s': %s\n" % (name, _why(e)))
                return 1
            if not _same(state, found):
                return _refuse(state, "it was replaced while remediate checked it", answer)
        finally:
            os.close(fd)
        return 0
    finally:
        os.umask(old)


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
    return 11


def remove(args, data, answer):
    """rm -f -- $1."""
    try:
        os.unlink(args[0])
    except FileNotFoundError:
        pass
    except OSError as e:
        answer.e("rm: cannot remove '%s': %s\n" % (args[0], _why(e)))
        return 1
    return 0


def sha256(args, data, answer):
    """[ -e "$1" ] || exit 3; sha256sum < "$1"."""
    try:
        os.stat(args[0])
    except OSError:
        return 3
    digest, code = _sum(args[0], answer)
    if digest is not None:
        answer.o("%s  -\n" % digest)
    return code


FUNCTIONS = {f.__name__: f for f in (read, write, journal_then, list_backups, backup, take_lock, remove, sha256,
                                      private_folder)}


def spawn(argv, data, answer):
    """Run argv as a session would: its stdin the bytes given, its stdout and stderr captured; 127 not found."""
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    if hasattr(os, "posix_spawnp"):  # Python 3.8+: vfork and exec, a fifth of a fork's cost for this process
        try:
            pid = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=(signal.SIGPIPE,), file_actions=[
                (os.POSIX_SPAWN_DUP2, r0, 0), (os.POSIX_SPAWN_DUP2, w1, 1), (os.POSIX_SPAWN_DUP2, w2, 2)])
        except OSError as e:
            for fd in (r0, w0, r1, w1, r2, w2):
                os.close(fd)
            answer.e("sh: 1: %s: %s\n" % (argv[0], "not found" if e.errno == 2 else _why(e)))
            return 127 if e.errno == 2 else 126
    else:
        pid = os.fork()
    if pid == 0:  # the child of a fork: the signals a shell would give it, the pipes as 0, 1, 2, then exec
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.dup2(r0, 0)
            os.dup2(w1, 1)
            os.dup2(w2, 2)
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, ("sh: 1: %s: %s\n" % (argv[0], "not found" if e.errno == 2 else _why(e))).encode())
            os._exit(127 if e.errno == 2 else 126)
        finally:
            os._exit(127)
    for fd in (r0, w1, w2):
        os.close(fd)
    outputs = {r1: [], r2: []}
    poll = select.poll()
    for fd in outputs:
        poll.register(fd, select.POLLIN)
    view = memoryview(data)
    if view:
        os.set_blocking(w0, False)
        poll.register(w0, select.POLLOUT)
    else:
        os.close(w0)
    kept = {r1: 0, r2: 0}
    open_fds = len(outputs) + (1 if view else 0)
    while open_fds:
        for fd, _ in poll.poll():
            if fd == w0:
                try:
                    view = view[os.write(w0, view[:1 << 16]):]
                except BlockingIOError:
                    continue
                except OSError:  # the command closed its stdin: the rest is not for it
                    view = view[:0]
                if not view:
                    poll.unregister(w0)
                    os.close(w0)
                    open_fds -= 1
                continue
            chunk = os.read(fd, 1 << 16)
            if chunk:
                part = chunk[:MAX_KEPT - kept[fd]]
                outputs[fd].append(part)
                kept[fd] += len(part)
            if not chunk or kept[fd] >= MAX_KEPT:  # its end, or more than will ever be read: stop reading it
                poll.unregister(fd)
                os.close(fd)
                open_fds -= 1
    _, status = os.waitpid(pid, 0)
    answer.out.extend(outputs[r1])
    answer.err.extend(outputs[r2])
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run(argv, data, answer):
    if len(argv) >= 4 and argv[0] == "sh" and argv[1] == "-c":
        name = PINNED.get(_new_sha256(argv[2].encode("utf-8", "surrogateescape")).hexdigest())
        if name is not None:
            mark = (len(answer.out), len(answer.err))
            try:
                return FUNCTIONS[name](argv[4:], data, answer)
            except Fallback:
                del answer.out[mark[0]:], answer.err[mark[1]:]
    return spawn(argv, data, answer)


def serve(stdin, stdout):
    token = stdin.readline().strip()
    if not token:
        return 0
    stdout.write(token + b" ready\n")
    stdout.flush()
    while True:
        line = stdin.readline()
        if not line:
            return 0
        fields = line.split()
        if len(fields) < 2 or fields[0] != token or not all(f.isdigit() for f in fields[1:]):
            return 97
        sizes = [int(f) for f in fields[1:]]
        argv = []
        for size in sizes[1:]:
            argv.append(stdin.read(size).decode("utf-8", "surrogateescape") if size else "")
        data = stdin.read(sizes[0]) if sizes[0] else b""
        if len(data) != sizes[0] or sum(len(a.encode("utf-8", "surrogateescape")) for a in argv) != sum(sizes[1:]):
            return 0  # the connection ended mid-command: nothing runs on a part of its input
        answer = Answer()
        try:
            code = run(argv, data, answer) if argv else 127
        except Exception as e:  # noqa: BLE001 - reported as the command's failure, never the agent's end
            answer.e("remediate agent: %s: %s\n" % (type(e).__name__, e))
            code = 1
        out, err = b"".join(answer.out), b"".join(answer.err)
        stdout.write(b"%s %d %d %d\n" % (token, code, len(out), len(err)))
        stdout.write(out)
        stdout.write(err)
        stdout.flush()


if __name__ == "__main__":
    sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer))
