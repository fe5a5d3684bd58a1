"""Timestamped copies of a file beside it (the backup step): list them, make one, prune the older ones."""

import stat

from remediate.transport.onhost.common import (
    os,
    _copy_p, _discard, _folder, _folder_synced, _pinned, _private_temp, _sha256_fd, _sum, _synced, _why)


def _ours(st, owner):
    """Whether what lstat found is a backup remediate may list or prune: a regular file of the backed-up file's owner
    or of the user remediate runs as, never a link, and never a name another user planted."""
    return stat.S_ISREG(st.st_mode) and st.st_uid in (owner, os.geteuid())


def list_backups(args, data, answer):
    """The sha256 of $1 ("<sha256>  -"), then the regular files named $1.backup-* that are its owner's or ours, never a
    link; 3 when $1 is absent."""
    path = args[0]
    dir_fd, base = _folder(path, answer)
    if dir_fd is None:
        return 3 if base == 3 else base
    try:
        try:
            owner = os.stat(base, dir_fd=dir_fd).st_uid
        except OSError:
            return 3
        digest, code = _sum(dir_fd, base, path, answer)
        if digest is None:
            return code
        answer.o("%s  -\n" % digest)
        directory = path.rpartition("/")[0]
        prefix = base + ".backup-"
        for name in sorted(n for n in os.listdir(dir_fd) if n.startswith(prefix)):  # the glob's * matches nothing too
            try:
                found = os.lstat(name, dir_fd=dir_fd)
            except OSError:
                continue
            if _ours(found, owner):
                answer.o((directory + "/" if "/" in path else "") + name + "\n")
        return 0
    finally:
        os.close(dir_fd)


def backup(args, data, answer):
    """Only if $1 still has the sha256 $2 (9 otherwise): a private copy (cp -p) hard-linked to the first free name of
    $3, $3.1 ... $3.9 (a link never follows or replaces a name found there), in $1's folder, done through its open
    descriptor, and that folder synced: the name is on disk before the answer says it is there; prints that name
    and its sha256. The older backups are pruned by prune_backups, once the run is done."""
    src, want, name = args[0], args[1], args[2]
    dir_fd, base = _folder(src, answer)
    if dir_fd is None:
        return 2 if base == 3 else base
    try:
        made = _copy(dir_fd, base, src, want, name.rsplit("/", 1)[-1], answer)
        if isinstance(made, int):
            return made
        shown = name[:len(name) - len(name.rsplit("/", 1)[-1])] + made
        if not _folder_synced(dir_fd, shown, answer):  # the run may change nothing more in this folder
            return 1
        digest, code = _sum(dir_fd, made, name, answer)
        if digest is None:
            return code
        answer.o("%s\n%s\n" % (shown, digest))
        return 0
    finally:
        os.close(dir_fd)


def prune_backups(args, data, answer):
    """Removes the older backups of $1 named $3... (in $1's folder, through its open descriptor), never $2 (the one
    the run made), a link, or anything not a regular file of $2's owner (the file's: cp -p) or ours; prints each name
    removed. 3 when $2 is gone (nothing is removed then)."""
    src, keep, old = args[0], args[1].rsplit("/", 1)[-1], args[2:]
    dir_fd, base = _folder(src, answer)
    if dir_fd is None:
        return 2 if base == 3 else base
    try:
        try:
            owner = os.lstat(keep, dir_fd=dir_fd).st_uid
        except OSError as e:
            answer.e("remediate: the backup %s: %s\n" % (args[1], _why(e)))
            return 3
        for path in old:
            old_name = path.rsplit("/", 1)[-1]
            if old_name == keep or path.rsplit("/", 1)[0] != src.rsplit("/", 1)[0]:
                continue
            try:
                if not _ours(os.lstat(old_name, dir_fd=dir_fd), owner):
                    continue
                os.unlink(old_name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError as e:
                answer.e("rm: cannot remove '%s': %s\n" % (path, _why(e)))
                return 1
            answer.o(path + "\n")
        return 0
    finally:
        os.close(dir_fd)


def _copy(dir_fd, base, src, want, name, answer):
    """The copy of base made under the first free name of name, name.1 ... name.9 in the open folder: that name, or
    the exit code."""
    try:
        fd, st = _pinned(dir_fd, base, True)
    except OSError as e:
        answer.e("sh: cannot open %s: %s\n" % (src, _why(e)))
        return 2
    if fd is None:
        answer.e("sha256sum: -: not a regular file\n")
        return 1
    try:
        now = _sha256_fd(fd)
        if now != want:
            answer.e(now + "\n")
            return 9
        tmp, out = _private_temp(dir_fd, answer)
        if out is None:
            return 2
        try:
            try:
                _copy_p(fd, out, st)
                _synced(out)  # whole on disk before its name appears (and before any later step changes the file)
            except OSError as e:
                answer.e("cp: cannot copy '%s': %s\n" % (src, _why(e)))
                return 1
            finally:
                os.close(out)
            for suffix in ("", ".1", ".2", ".3", ".4", ".5", ".6", ".7", ".8", ".9"):
                try:
                    os.link(tmp, name + suffix, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                return name + suffix
            answer.e("every name from %s to %s.9 is taken\n" % (name, name))
            return 8
        finally:
            _discard(dir_fd, tmp)
    finally:
        os.close(fd)
