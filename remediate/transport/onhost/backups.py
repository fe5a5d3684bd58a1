"""Timestamped copies of a file beside it (the backup step): list them, make one, prune the older ones."""

import os

from remediate.transport.onhost.common import _copy_p, _private_temp, _sum, _why


def list_backups(args, data, answer):
    """The sha256 of $1 ("<sha256>  -"), then the regular files named $1.backup-*, never a link; 3 when $1 is absent."""
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
    """Only if $1 still has the sha256 $2 (9 otherwise): a private copy (cp -p) hard-linked to the first free name of
    $3, $3.1 ... $3.9 (a link never follows or replaces a name found there); prints that name and its sha256; then
    removes the older backups named after it ($4...), skipping the new one, links and anything not a regular file."""
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

