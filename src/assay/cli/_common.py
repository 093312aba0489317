"""What every command module shares: the consoles, the repository option's value, progress bars and small
formatters. Importing it costs only typer and rich; each command imports the layer it uses when it runs."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def _console(stream: Any, **kwargs: Any) -> Console:
    """A terminal's width on a terminal; elsewhere (pipes, CI) wide enough that no value is cut or wrapped."""
    return Console(width=None if stream.isatty() else 100_000, **kwargs)


out = _console(sys.stdout)
err = _console(sys.stderr, stderr=True)
_state: dict[str, Any] = {"repo": "."}
GATE_BRANCHES = ("quarantine/", "staging/")  # the gate's own branches: listed by `branch --all` only

RepoOpt = Annotated[str, typer.Option("--repo", "-C", metavar="FOLDER",
                                      help="Repository folder (default: current folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]



def _repo() -> Any:
    from assay import Repo

    return Repo(_state["repo"])


def _spec(spec: str) -> Any:
    """``DATASET[@REV]`` read by the one parser the API uses (assay.repo.revisions.parse_dataset_spec)."""
    from assay.repo.revisions import parse_dataset_spec

    return parse_dataset_spec(spec)


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback drawn as Rich progress bars on stderr (hidden when not a terminal)."""
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=not err.is_terminal)
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total or None)
        bars.update(tasks[stage], completed=done, total=total or None)

    with bars:
        yield report


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

