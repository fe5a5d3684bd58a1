"""remediate's reads and writes of one file on the host: read (bounded), write (atomic, checked against the plan,
its before-image first), remove, sha256. Each returns the exit code the controller acts on (transport/__init__.py)."""

import stat

from remediate.transport.onhost.common import (
    os,
    Answer, _copy_p, _discard, _facts, _folder, _folder_synced, _is_link, _named, _new_file, _pinned, _private_temp,
    _sha256_fd, _sum, _synced, _why, _write_all,
)


def read(args, data, answer):
    """$1 read whole, at most $2 bytes: "<mode> <uid> <gid>\\n<link or empty>\\n<bytes>"; 3 absent, 6 not a regular file, 7 too
    large. The file is reached through its open folder (common._folder) and opened only once known regular."""
    path, limit = args[0], int(args[1])
    dir_fd, name = _folder(path, answer)
    if dir_fd is None:
        return 3 if name == 3 else name
    try:
        try:
            fd, st = _pinned(dir_fd, name or ".", True)
        except OSError:
            return 3
        if fd is None:
            answer.e("not a regular file\n")
            return 6
        try:
            if st.st_size > limit:
                answer.e("%d bytes\n" % st.st_size)
                return 7
            link = _real(path) if name and _is_link(os.lstat(name, dir_fd=dir_fd)) else ""
            chunks, left = [], limit
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    answer.o("%s\n%s\n" % (_facts(st), link))
    answer.o(b"".join(chunks))
    return 0


def _real(path):
    """The canonical path of the file the link path leads to (posixpath, and the os it imports, only here)."""
    import posixpath
    return posixpath.realpath(path)


def _owner(owner, answer):
    """"uid:gid" or "user:group" as numbers; None (the reason said) when a name is not known here."""
    uid, _, gid = owner.partition(":")
    try:
        if not uid.isdigit():
            import pwd  # built-in modules: only when a name is given
            uid = pwd.getpwnam(uid).pw_uid
        if not gid.isdigit():
            import grp
            gid = grp.getgrnam(gid).gr_gid
    except (ImportError, KeyError):
        answer.e("chown: invalid user: '%s'\n" % owner)
        return None
    return int(uid), int(gid)


def _unchanged(dir_fd, name, path, st, expect, answer):
    """None when the file is still as planned ("<sha256> <mode> <uid> <gid>" or "absent"), else the exit code."""
    now = "absent"
    if st is not None:
        digest, code = _sum(dir_fd, name, path, answer)
        if digest is None:
            return code
        now = "%s %s" % (digest, _facts(st))
    if now != expect:
        answer.e(now + "\n")
        return 9
    return None


def _unlink_ours(dir_fd, name, ino):
    """name removed from the open folder if it is still the file ino (one this process made): quietly, and never a
    file put there since."""
    try:
        if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino == ino:
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _lstat(dir_fd, name):
    """The name's lstat in its open folder; None when it cannot be read (absent)."""
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return None


def _refused_link(st, path, answer):
    """5 when st is a symbolic link, which is never replaced nor followed; else None."""
    if st is not None and _is_link(st):
        answer.e("%s is a symbolic link; refusing to replace it\n" % path)
        return 5
    return None


def _still(dir_fd, name, path, expect, answer):
    """None when path is, now, still as planned (_unchanged); else 9, whatever is there now (a link put there, a
    folder, a file that cannot be read), with what it is said last: nothing was written, as when it changed before
    the write began."""
    st = _lstat(dir_fd, name)
    if st is not None and _is_link(st):
        answer.e("a symbolic link\n")
        return 9
    return 9 if _unchanged(dir_fd, name, path, st, expect, answer) else None


def _drop(path):
    """A copy the write made and did not need (its before-image, when the file changed meanwhile), removed: no
    journal names it. Quietly: the refusal is what the answer says."""
    dir_fd, name = _folder(path, Answer(), private=True)
    if dir_fd is None:
        return
    try:
        _discard(dir_fd, name)
    finally:
        os.close(dir_fd)


def _before_image(dir_fd, name, path, backup, answer):
    """The file copied (cp -p) to backup, a new file in a private folder of this user's (never a name found there,
    nor through a link); None, or the exit code."""
    bdir, bname = _folder(backup, answer, private=True)
    if bdir is None:
        return 2
    try:
        out = _new_file(bname, answer, bdir)
        if out is None:
            return 2
        try:
            fd, st = _pinned(dir_fd, name, False)
            if fd is None:
                raise OSError(0, "not a regular file")
            try:
                _copy_p(fd, out, st)
            finally:
                os.close(fd)
            _synced(out)  # on disk before the file is replaced: after a power cut, never a new file and an empty copy
            _synced(bdir)  # and its name: never a new file and no copy at all
        except OSError as e:
            answer.e("cp: cannot copy '%s' to '%s': %s\n" % (path, backup, _why(e)))
            _discard(bdir, bname)  # no journal names it: a retry makes it anew
            return 1
        finally:
            os.close(out)
    finally:
        os.close(bdir)
    return None


def write(args, data, answer):
    """Replace $1 with stdin through a private temporary file: mode $2 (else the file's), owner $3 (else the file's),
    only if it is still $4 (9 otherwise; checked first, and again the moment before the rename, when a before-image
    made meanwhile is removed), its before-image first to $5, and only if the content's sha256 is $6 (10 otherwise);
    5 for a link. Prints the sha256 of what landed. All of it in $1's open folder (common._folder)."""
    path, mode, owner, expect, backup, want = (list(args) + [""] * 6)[:6]
    ids = _owner(owner, answer) if owner else None
    if owner and ids is None:
        return 1
    dir_fd, name = _folder(path, answer)
    if dir_fd is None:
        return 2 if name == 3 else name
    try:
        st = _lstat(dir_fd, name)
        failed = _refused_link(st, path, answer) \
            or (_unchanged(dir_fd, name, path, st, expect, answer) if expect else None) \
            or (_before_image(dir_fd, name, path, backup, answer) if backup else None)
        if failed:
            return failed
        tmp, fd = _private_temp(dir_fd, answer)
        if fd is None:
            return 2
        code = _replace(dir_fd, name, path, tmp, fd,
                        int(mode, 8) if mode else (stat.S_IMODE(st.st_mode) if st else 0o644),
                        ids or (None if st is None else (st.st_uid, st.st_gid)), data, want, answer, expect)
        if code == 9 and backup:  # changed while it was written: nothing was, and no journal names the copy
            _drop(backup)
        return code
    finally:
        os.close(dir_fd)


def _replace(dir_fd, name, path, tmp, fd, mode, ids, data, want, answer, expect=""):
    """The temporary file (open on fd) made mode, owned by ids, holding data, synced, renamed over path (which
    replaces a link there, never follows it, as `mv -fT`); the exit code. Not renamed: the temporary file is removed.
    With expect, path is checked again right before the rename (_still): an edit saved while the before-image and the
    new content were synced (milliseconds, more on a slow disk) is refused (9), never overwritten."""
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)
            if ids is not None:
                mine = os.fstat(fd)
                if (mine.st_uid, mine.st_gid) != ids:
                    os.fchown(fd, *ids)
            _write_all(fd, data)
            digest = _sha256_fd(fd)
        except OSError as e:
            answer.e("%s: %s\n" % (path, _why(e)))
            return 1
        if want and digest != want:
            answer.e("the content arrived incomplete (sha256 %s)\n" % digest)
            return 10
        try:
            _synced(fd)
        except OSError as e:
            answer.e("%s: %s\n" % (path, _why(e)))
            return 1
        failed = _still(dir_fd, name, path, expect, answer) if expect else None
        if failed:
            return failed
        try:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as e:
            answer.e("mv: cannot move '%s' to '%s': %s\n" % (tmp, path, _why(e)))
            return 1
        renamed = True
        if not _folder_synced(dir_fd, path, answer):  # a restore marked done must be done
            return 1
    finally:
        os.close(fd)
        if not renamed:
            _discard(dir_fd, tmp)
    answer.o(digest + "\n")
    return 0


def remove(args, data, answer):
    """rm -f -- $1: gone, whether it was there or not; removed in its open folder (common._folder). With $2
    ("<sha256> <mode> <uid> <gid>"), only while the file is still exactly that (9 otherwise, with what it is now)."""
    dir_fd, name = _folder(args[0], answer)
    if dir_fd is None:
        return 0 if name == 3 else 1
    try:
        if len(args) > 1 and args[1]:
            failed = _unchanged(dir_fd, name, args[0], _lstat(dir_fd, name), args[1], answer)
            if failed:
                return failed
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass  # (gone already: a retry after an agent killed before it synced syncs it now)
        except OSError as e:
            answer.e("rm: cannot remove '%s': %s\n" % (args[0], _why(e)))
            return 1
        if not _folder_synced(dir_fd, args[0], answer):
            return 1
    finally:
        os.close(dir_fd)
    return 0


def make_folders(args, data, answer):
    """mkdir -m 755 -- $1 $2 ... in turn (outermost first), each in its parent opened as _folder opens it (never
    through a link another user owns), and that parent synced before the next (common._named): a folder is answered
    for only once its name is on disk. One found there already fails, as mkdir does (1), as does one whose parent
    cannot be synced (removed again)."""
    old = os.umask(0)
    try:
        for path in args:
            dir_fd, name = _folder(path, answer)
            if dir_fd is None:
                return 1
            try:
                try:
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
                except OSError as e:
                    answer.e("mkdir: cannot create directory '%s': %s\n" % (path, _why(e)))
                    return 1
                if not _named(dir_fd, name, path, answer):
                    return 1
            finally:
                os.close(dir_fd)
        return 0
    finally:
        os.umask(old)


def sha256(args, data, answer):
    """The sha256 of $1 as `sha256sum -` prints it; 3 when $1 is absent."""
    dir_fd, name = _folder(args[0], answer)
    if dir_fd is None:
        return 3 if name == 3 else name
    try:
        try:
            os.stat(name, dir_fd=dir_fd)
        except OSError:
            return 3
        digest, code = _sum(dir_fd, name, args[0], answer)
    finally:
        os.close(dir_fd)
    if digest is not None:
        answer.o("%s  -\n" % digest)
    return code
