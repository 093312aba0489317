"""The prediction log's commits, in a process of their own beside the server.

A flush commits a second's predictions to the dataset: reading the buffer, hashing the rows, writing the
fragment and the manifest, a compare-and-swap on the branch. Most of that is Arrow's and releases the GIL, but
the rest held it for 20-40 ms a flush at 3,000 req/s, and the event loop waited for it in 5 ms slices (the
interpreter's switch interval): the slowest 1% of answers were the ones that came during a flush (p99 28 ms
against 9 ms with no flush). In a process of its own the commit shares no GIL with the event loop; it also
runs at the lowest priority (nice 19), so that on a busy machine the answers go first.

``Committer`` is the server's side: one child (``main`` here, in ``python -c``), started once, asked one
buffer file at a time over its stdin and answering on its stdout, one JSON line each. The child only commits;
the files, their renames and their removal stay with the server (``PredictionLog.flush``), so a child that dies
halfway leaves the file in place for the next flush, and the dataset as it was or with the rows in (the replay
skips request ids already there). The child exits when its stdin closes, the server's end of it included.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from assay.errors import ConflictError, StorageError

NICE = 19


class Committer:
    """The server's end of one committer process (started here; restarted if it died)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        # not ``-m``: the package imports this module first, and runpy would warn about running it twice
        self._proc = subprocess.Popen([sys.executable, "-c", "from assay.serve.committer import main; main()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)

    def commit(self, root: Path, model: str, branch: str | None, path: Path, *, skip_present: bool,
               provenance: tuple[str, dict[str, Any] | None]) -> int:
        """Commit the buffer file ``path`` (see ``assay.serve.log.commit_rows``); returns the rows written."""
        request = {"root": str(root), "model": model, "branch": branch, "path": str(path),
                   "skip_present": skip_present, "provenance": list(provenance)}
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            error: OSError | None = None
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError as e:  # a broken pipe: the child is gone
                line, error = b"", e
            if not line:  # the child died: the next flush starts another; the rows stay buffered
                _reap(proc, 0)
                self._proc = None
                raise StorageError(f"the prediction log's committer process exited ({error or proc.returncode}); "
                                   "the predictions stay buffered and the next flush tries again")
        answer = json.loads(line)
        if "error" in answer:
            raise ConflictError(f"committing predictions of {model!r} failed: {answer['error']}; they stay "
                                "buffered and the next flush tries again")
        return int(answer["written"])

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _reap(proc, 30)


def _reap(proc: subprocess.Popen[bytes], wait: float) -> None:
    """Close the child's stdin (it exits at the end of its input), give it ``wait`` seconds, then kill it."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: one JSON request a line in, one JSON answer a line out, until ``requests`` ends."""
    from assay.serve.log import commit_file

    for line in requests:
        try:
            r = json.loads(line)
            author, code = r["provenance"]
            written = commit_file(Path(r["root"]), r["model"], r["branch"], Path(r["path"]),
                                  skip_present=r["skip_present"], provenance=(author, code))
            answer: dict[str, Any] = {"written": written}
        except Exception as e:  # told to the server, which counts it and tries again later
            answer = {"error": f"{type(e).__name__}: {e}"}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(NICE)
    answers = os.fdopen(os.dup(1), "wb")  # the answers' own descriptor; whatever a library prints goes to stderr
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)

