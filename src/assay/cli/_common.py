"""What every command module shares: the consoles, the repository option's value, progress bars, tables and
small formatters. Importing it costs only typer: Rich is loaded when something that needs it is first printed (a
plain line into a pipe or file does not; ``--help`` is click's), its tables and progress bars when drawn, and each
command imports the layer it uses when it runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


# Text that Rich prints unchanged on a stream that is not a terminal: no markup tag, no :emoji: code, no tab or
# control character (Rich expands or strips them); a newline is fine
_NOT_PLAIN = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]|:\S*?:")
_PLAIN_OPTIONS = frozenset({"markup", "highlight", "soft_wrap", "end"})  # options without effect on plain text
_WIDTH = 100_000  # off a terminal (pipes, files, CI): wide enough that no value is cut or wrapped


class _LazyConsole:
    """A Rich console on a stream, made when first used; ``out.print(...)`` as on the console itself.

    Off a terminal, a line of plain text (what most commands print) is written as it is, without loading Rich
    (20 ms of every command's start-up): byte for byte what Rich writes there. Anything else (markup, tables,
    a terminal, an environment that makes Rich colour a pipe) goes to Rich.
    """

    def __init__(self, stream: str, **kwargs: Any):
        self._stream, self._kwargs = stream, kwargs
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            stream = getattr(sys, self._stream)  # a terminal's width; elsewhere wide enough
            width = None if stream.isatty() else _WIDTH
            self._console = Console(width=width, **self._kwargs)
        return self._console

    @property
    def is_plain(self) -> bool:
        """Whether what is printed lands as plain text (no colour, no markup rendered): a command can then build
        its lines without markup, and they are written without loading Rich."""
        return self._plain_stream()

    @property
    def is_terminal(self) -> bool:
        return False if self._plain_stream() else bool(self.console.is_terminal)

    def print(self, *objects: Any, **options: Any) -> None:
        text = self._plain_text(objects, options)
        if text is None:
            self.console.print(*objects, **options)
            return
        stream = getattr(sys, self._stream)
        stream.write(text + options.get("end", "\n"))
        stream.flush()

    def _plain_stream(self) -> bool:
        """Whether Rich would treat the stream as a plain file: not a terminal, and nothing (FORCE_COLOR,
        TTY_COMPATIBLE, TTY_INTERACTIVE, a notebook, IDLE) telling it otherwise."""
        if self._console is not None and self._console.width != _WIDTH:
            return False
        if any(v in os.environ for v in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")) or \
                "ipykernel" in sys.modules or "idlelib" in sys.modules:
            return False
        try:
            return not getattr(sys, self._stream).isatty()
        except (AttributeError, ValueError):
            return False

    def _plain_text(self, objects: tuple[Any, ...], options: dict[str, Any]) -> str | None:
        """The one line(s) of text to write as they are, or None when Rich must render ``objects``."""
        if len(objects) != 1 or type(objects[0]) is not str or not options.keys() <= _PLAIN_OPTIONS:
            return None
        text: str = objects[0]
        if (options.get("markup", True) and "[" in text) or _NOT_PLAIN.search(text) or \
                len(text) * 2 >= _WIDTH or not self._plain_stream():
            return None
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


out: Any = _LazyConsole("stdout")
err: Any = _LazyConsole("stderr", stderr=True)
_state: dict[str, Any] = {"repo": "."}
GATE_BRANCHES = ("quarantine/", "staging/")  # the gate's own branches: listed by `branch --all` only

RepoOpt = Annotated[str, typer.Option("--repo", "-C", metavar="FOLDER",
                                      help="Repository folder (default: current folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", metavar="ENGINE", envvar="ASSAY_ENGINE", show_envvar=False,
    help="Where the work split by fragment runs: inprocess[:THREADS] (default), ray (RAY_ADDRESS, or a local "
         "Ray), ray:auto, ray:HOST:PORT or ray://HOST:PORT. Default: $ASSAY_ENGINE.")]



class _NoPandasYet:
    """A finder that says pandas is absent (see ``_arrow_without_pandas``)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not needed by this command")


def _arrow_without_pandas() -> None:
    """Spare a command that reads and writes files the import of pandas (a third of a second).

    pyarrow imports pandas on its first ``pa.array``/``pa.scalar`` call only to ask whether the value is a pandas
    object; the commands that call this take file names, never pandas objects, so pyarrow is let to find pandas
    absent once. It imports pandas again by itself when something converts to pandas (``to_pandas``). Only in
    the ``assay`` process (``main``), never when the app is called in-process (tests, notebooks).
    """
    if not _state.get("process") or "pandas" in sys.modules:
        return
    import pyarrow as pa

    finder = _NoPandasYet()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([])  # pyarrow looks for pandas here, and remembers the answer
    finally:
        sys.meta_path.remove(finder)


def _repo(engine: str | None = None) -> Any:
    """The repository of ``--repo``; ``engine`` (the text of ``--engine``) runs its work split by fragment."""
    from assay import Repo

    if not engine:
        return Repo(_state["repo"])
    from assay.engines import open_engine

    return Repo(_state["repo"], engine=open_engine(engine))


def _spec(spec: str) -> Any:
    """``DATASET[@REV]`` read by the one parser the API uses (assay.repo.revisions.parse_dataset_spec)."""
    from assay.repo.revisions import parse_dataset_spec

    return parse_dataset_spec(spec)


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback drawn as Rich progress bars on stderr (nothing when it is not a terminal)."""
    if not err.is_terminal:  # a pipe, a file, CI: no bars, and Rich's progress module (20 ms) not loaded
        yield lambda stage, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err.console, transient=True)
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total or None)
        bars.update(tasks[stage], completed=done, total=total or None)

    with bars:
        yield report


def _table(*columns: str, **kwargs: Any) -> Table:
    """A Rich table (Rich's table module is imported when one is drawn)."""
    from rich.table import Table

    return Table(*columns, **kwargs)


def escape(text: str) -> str:
    """``rich.markup.escape``: ``text`` printed as it is, not read as markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _output(file: str) -> Path:
    """An output file named by an option (-o, --html): its folders are created."""
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _short(oid: str | None) -> str:
    return oid[:12] if oid else "-"


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

