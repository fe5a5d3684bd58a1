"""How the host side is driven: as the persistent agent (serve: one process answering a run's requests, see
transport/agent.py), or as a one-shot (`python3 -I -S -c TEXT OPERATION ARGS...`, stdin its input, its output and exit
code the operation's). Either way a request names one of remediate's own operations (argv[0] is OPERATION) or is a
command, run as a session would run it.

An agent request is a line `<token> <n> <length of argv[0]> <length of argv[1]> ...`, then each argument's bytes
(UTF-8), then the n bytes of the command's stdin. The answer is `<token> <exit code> <stdout length> <stderr length>`
and a newline, then both outputs. The token comes first on stdin, never on the command line; a line without it ends
the agent (exit 97), so bytes out of step are never run.
"""

import select
import sys

try:  # the built-in module: signal imports enum, a few ms more
    import _signal as signal  # type: ignore[import-not-found]
except ImportError:
    import signal

from remediate.transport.onhost.backups import backup, list_backups, prune_backups
from remediate.transport.onhost.common import MAX_KEPT, OPERATION, Answer, _journal, _read_all, _why, _write_all, os
from remediate.transport.onhost.files import make_folders, read, remove, sha256, write
from remediate.transport.onhost.folders import private_folder, release_lock, renew_lock, show_lock, take_lock


def journal_then(args, data, answer):
    """The first $2 bytes of stdin durably to $1 (0600), then the command with the rest; 8 if not. The journal goes
    only into a private folder of this user's, through its open descriptor (common._folder), as a line added to the
    copy this agent wrote before (common._appended) or whole. A name found on its temporary file is left as it is; a
    temporary file of ours that failed is removed."""
    journal, size, rest = args[0], int(args[1]), args[2:]
    if len(data) < size:
        answer.e("%s: the journal arrived incomplete\n" % journal)
    elif _journal(journal, data[:size], answer, append=True):
        return run(rest, data[size:], answer)
    answer.e("remediate: cannot write the journal %s\n" % journal)
    return 8


def journal_new_then(args, data, answer):
    """journal_then into a run folder made first, as private_folder makes it (one round trip for both); a folder
    refused or not made (said, and marked for the controller) is a journal not written: 8, and nothing runs."""
    folder = args[0].rsplit("/", 1)[0]
    try:
        made = private_folder([folder], b"", answer) == 0
    except Exception as e:  # noqa: BLE001 - the folder's failure, never taken for the command's
        answer.e("remediate: %s: %s\n" % (type(e).__name__, e))
        made = False
    if made:
        return journal_then(args, data, answer)
    answer.e("remediate: cannot make the run's folder %s\nremediate: cannot write the journal %s\n" % (folder, args[0]))
    return 8


def spawn(argv, data, answer):
    """Run argv as a session would: its stdin the bytes given, its stdout and stderr captured; 127 not found."""
    r0, w0 = os.pipe()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    if hasattr(os, "posix_spawnp"):  # Python 3.8+: vfork and exec, a fifth of a fork's cost for this process
        try:
            pid = os.posix_spawnp(argv[0], argv, _environ(), setsigdef=(signal.SIGPIPE,), file_actions=[
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
            from os import execvp  # Python 3.6 and 3.7 only
            execvp(argv[0], argv)
        except OSError as e:
            os.write(2, ("sh: 1: %s: %s\n" % (argv[0], "not found" if e.errno == 2 else _why(e))).encode())
            os._exit(127 if e.errno == 2 else 126)
        finally:
            os._exit(127)
    for fd in (r0, w1, w2):
        os.close(fd)
    return _pump(pid, w0, r1, r2, data, answer)


def _environ():
    """The environment a command gets: os.environ where os is loaded (it follows putenv: the controller's tests), else
    the agent's own, which nothing changes."""
    loaded = sys.modules.get("os")
    return os.environ if loaded is None else loaded.environ


def _pump(pid, w0, r1, r2, data, answer):
    """Feed the command its stdin and keep its outputs (at most MAX_KEPT bytes of each) until it ends; its exit code
    as a shell gives it."""
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


#: The operations batch may run: those that change nothing.
READ_ONLY = ("read", "list_backups", "sha256", "show_lock")
#: Once a batch's answers hold this many bytes, it leaves the rest for later (-1): one more read (at most its own
#: bound) keeps the whole answer under what the controller reads of one (agent.MAX_OUTPUT).
BATCH_BUDGET = 4 * 1024 * 1024


def batch(args, data, answer):
    """Several read-only operations (READ_ONLY) in one request, in order: for each, the number of its arguments (its
    name first), then those. Each one's answer on stdout: `<exit code> <stdout length> <stderr length>`, a newline,
    then both; past BATCH_BUDGET, `-1 0 0` for each left unrun. 0; 2, having run none of them, when the request
    names anything else or is out of step."""
    todo, at = [], 0
    while at < len(args):
        count = int(args[at]) if args[at].isdigit() else 0
        argv = args[at + 1:at + 1 + count]
        if count < 1 or len(argv) != count or argv[0] not in READ_ONLY:
            answer.e("remediate: batch runs only %s, each after its number of arguments\n" % ", ".join(READ_ONLY))
            return 2
        todo.append(argv)
        at += 1 + count
    kept = 0
    for argv in todo:
        if kept > BATCH_BUDGET:
            answer.o(b"-1 0 0\n")  # not run: asked for again on its own
            continue
        part = Answer()
        try:
            code = FUNCTIONS[argv[0]](argv[1:], b"", part)
        except Exception as e:  # noqa: BLE001 - that operation's failure, as run() reports one
            part.e("remediate: %s: %s\n" % (type(e).__name__, e))
            code = 1
        out, err = b"".join(part.out), b"".join(part.err)
        kept += len(out) + len(err)
        answer.o(b"%d %d %d\n" % (code, len(out), len(err)) + out + err)
    return 0


FUNCTIONS = {f.__name__: f for f in (read, write, journal_then, journal_new_then, list_backups, backup, prune_backups,
                                      take_lock, remove, sha256, private_folder, renew_lock, release_lock, show_lock,
                                      batch, make_folders)}


def run(argv, data, answer):
    """One request: remediate's own operation argv[1] with the arguments after it, or the command argv."""
    if argv and argv[0] == OPERATION:
        function = FUNCTIONS.get(argv[1]) if len(argv) > 1 else None
        if function is None:
            answer.e("remediate: no operation %r on this host\n" % argv[1:2])
            return 127
        return function(argv[2:], data, answer)
    return spawn(argv, data, answer)


def one_shot(argv):
    """`python3 -I -S -c TEXT OPERATION ARGS...`: the operation on this process's stdin, its outputs written out."""
    answer = Answer()
    try:
        code = run([OPERATION] + argv, _read_all(0), answer)
    except Exception as e:  # noqa: BLE001 - reported as the operation's failure, as the agent does
        answer.e("remediate: %s: %s\n" % (type(e).__name__, e))
        code = 1
    _write_all(1, b"".join(answer.out))
    _write_all(2, b"".join(answer.err))
    return code


def serve(stdin, stdout):
    """The agent: requests answered in order until stdin ends (0), or a line out of step (97)."""
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


if __name__ == "__main__":  # as `python3 -c TEXT`: a one-shot when given an operation, else the agent
    sys.exit(one_shot(sys.argv[1:]) if len(sys.argv) > 1 else serve(sys.stdin.buffer, sys.stdout.buffer))
