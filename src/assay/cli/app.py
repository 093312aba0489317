"""The ``assay`` command line: a thin adapter that parses, calls the library once, and renders.

This module holds the root command and the error boundary (``main``); the commands live in one module per group
(repo_cmds, data_cmds, check_cmds, upkeep_cmds, gate_cmds, ...), none importing this one. A process imports
the module of the command it runs and no other (``for_command``); ``app``, the whole command line, is built on
first use (``--help``, a misspelled command, tests). Errors from the library are turned into one-line messages
at this single boundary.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from assay.cli._common import RepoOpt, _progress, _state, err, escape, out
from assay.cli._help import Typer
from assay.errors import AssayError, MergeConflict

EXIT_CODES = """Exit codes: 0 done; 1 an error, a failed check or fsck, or a batch the gate rejected;
2 a usage error (unknown command or option, missing argument); 3 a merge conflict; 130 interrupted."""

# The command line's words and the module that defines each, in the order ``assay --help`` lists them (after
# ``ui`` and ``quickstart``; a test checks the map against the modules): the top-level commands of a module's
# ``app``, and the named groups.
_COMMANDS: dict[str, str] = {
    **dict.fromkeys(("init", "reset", "revert", "status", "commit", "log", "show", "branch", "checkout", "tag",
                     "merge"), "repo_cmds"),
    **dict.fromkeys(("add", "rm", "datasets", "diff", "export", "restore"), "data_cmds"),
    **dict.fromkeys(("fsck", "gc", "compact"), "upkeep_cmds"),
    "check": "check_cmds",
    **dict.fromkeys(("ingest", "scores", "screen", "help"), "gate_cmds"),
    **dict.fromkeys(("clone", "fetch", "pull", "push"), "remote_cmds"),
}
_GROUPS: dict[str, tuple[str, str]] = {
    "suite": ("check_cmds", "suite_app"),
    "quarantine": ("gate_cmds", "quarantine_app"),
    "remote": ("remote_cmds", "remote_app"),
    "model": ("model_cmds", "app"),
    "monitor": ("monitor_cmds", "app"),
    "serve": ("serve_cmds", "app"),
    "predictions": ("serve_cmds", "predictions_app"),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"assay.cli.{name}")


def _version(value: bool) -> None:
    if value:
        from assay import __version__  # the package's own (importlib.metadata costs more than the rest of it)

        out.print(f"assay {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


def _root(repo: RepoOpt = ".",
          _: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False) -> None:
    _state["repo"] = repo


def quickstart(path: Annotated[str, typer.Option(metavar="FOLDER",
                                                 help="Folder for the demo repository.")] = "assay-quickstart"
               ) -> None:
    """Build a demo repository from bundled data (scikit-learn digits) and show what assay does."""
    from assay.cli.quickstart import run

    with _progress() as report:
        for line in run(Path(path), progress=report):
            out.print(line, markup=False, highlight=False, soft_wrap=True)


def _root_app() -> Typer:
    root = Typer(help="assay: version control, tests and monitoring for ML data and models.",
                 epilog=EXIT_CODES, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
    root.callback()(_root)
    return root


def _add(root: Typer, word: str) -> None:
    """Register the command or group ``word`` on ``root``, importing only the module that defines it."""
    if word in _GROUPS:
        module, attr = _GROUPS[word]
        root.add_typer(getattr(_module(module), attr), name=word)
    elif word in _COMMANDS:
        root.registered_commands += [c for c in _module(_COMMANDS[word]).app.registered_commands
                                     if _name_of(c) == word]
    elif word == "ui":
        root.command("ui")(_module("ui_cmds").ui)
    elif word == "quickstart":
        root.command()(quickstart)


_WORDS = ("ui", "quickstart", *_COMMANDS, *_GROUPS)
_whole: Typer | None = None


def whole_app() -> Typer:
    """The whole command line (every module imported), built once."""
    global _whole
    if _whole is None:
        root = _root_app()
        for word in _WORDS:
            _add(root, word)
        _whole = root
    return _whole


def __getattr__(name: str) -> Any:
    if name == "app":
        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ROOT_VALUE_OPTIONS = ("--repo", "-C")


def for_command(argv: Sequence[str]) -> typer.Typer:
    """The root app with only the one command or group ``argv`` names (the whole app when it names none).

    Typer turns every registered function into a click command before it parses anything (signatures, type
    hints evaluated, parameters built: 0.09 s for the ~65 commands), and importing every command module costs
    as much again, while a process runs one. The reduced app parses, validates and prints help for that
    command exactly as the whole one; ``assay --help``, a misspelled command (whose error suggests the right
    one) and anything unusual get the whole app.
    """
    word = _command_word(argv)
    if word not in _WORDS:
        return whole_app()
    root = _root_app()
    _add(root, word)
    return root


def _command_word(argv: Sequence[str]) -> str | None:
    """The command's name in ``argv`` (the first word after the root's options), or None."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _ROOT_VALUE_OPTIONS:
            i += 2
        elif token.startswith("--repo="):
            i += 1
        elif token.startswith("-"):
            return None  # --help, --version, an unknown option: the whole app answers
        else:
            return token
    return None


def _name_of(command: typer.models.CommandInfo) -> str | None:
    if command.name:
        return command.name
    return typer.main.get_command_name(command.callback.__name__) if command.callback else None


# The modules whose commands do no linear algebra (hashing, Arrow, DuckDB, the catalog): see _one_blas_thread.
_NO_BLAS = frozenset({"repo_cmds", "data_cmds", "upkeep_cmds", "remote_cmds", "check_cmds"})
_BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def _one_blas_thread(word: str | None) -> None:
    """Load numpy's OpenBLAS with one thread in a process that runs a command without linear algebra.

    OpenBLAS starts a thread per core when numpy is imported, and those threads spin for tens of milliseconds
    waiting for work that never comes (measured: 150 ms of CPU for an ``import numpy`` of 85 ms on 2 cores),
    taking a core from the reading and hashing an ``add`` does beside its main thread. Only for the commands of
    ``_NO_BLAS``, only before numpy is imported, and never over a value the user set.
    """
    module = _GROUPS[word][0] if word in _GROUPS else _COMMANDS.get(word or "")
    if module in _NO_BLAS and "numpy" not in sys.modules:
        os.environ.setdefault(_BLAS_THREADS, "1")


def main() -> None:
    """Entry point: run the app, turning assay errors and usage errors into messages and exit codes."""
    _state["process"] = True  # the assay process itself (see _common._arrow_without_pandas)
    _one_blas_thread(_command_word(sys.argv[1:]))
    try:
        code = for_command(sys.argv[1:])(standalone_mode=False, prog_name="assay")  # click returns typer.Exit's code
        sys.exit(code if isinstance(code, int) else 0)
    except AssayError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1 if not isinstance(e, MergeConflict) else 3)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except typer.TyperException as e:  # usage errors (typer's own click): the usage, the error, exit code 2
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {e.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except Exception as e:
        if _disk_full(e):
            err.print(f"[red]error:[/] {escape(str(_full_error(e)))}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(1)
        raise


def run() -> None:
    """The ``assay`` console command: ``main``, then the process ends without tearing the interpreter down.

    Python's teardown frees every module and object one by one, and after an ``add`` of a 1M-row table that
    took 40-55 ms of a 400 ms command. Everything a command writes is flushed and synced before it returns
    (the store's atomic writes, SQLite's transactions), so the exit handlers are run, standard output and error
    flushed, and the process ended with ``os._exit``. A command that left a thread running gets the ordinary
    exit, which waits for it, and so does a profiled or traced run. ``python -m assay.cli`` and in-process callers
    keep ``main``'s ``SystemExit``.
    """
    try:
        main()
    except SystemExit as e:
        _leave(e.code)
    _leave(0)


def _leave(code: object) -> None:
    if code is None:
        code = 0
    if not isinstance(code, int) or threading.active_count() > 1 or _observed():
        raise SystemExit(code)  # a profiler or debugger (cProfile, pyinstrument, pdb) reports after the script
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that went away (`assay log | head`), a closed stream
            code = code or 120  # what Python's own exit gives when it cannot flush standard output
    os._exit(code)


def _observed() -> bool:
    """Whether a profiler, tracer or debugger watches this process: ``sys.setprofile``/``settrace``, or (Python
    3.12 on, where cProfile and coverage use it) a ``sys.monitoring`` tool."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(i) for i in range(6))


def _disk_full(e: BaseException) -> bool:
    """A full filesystem seen by the store (OSError ENOSPC) or by SQLite ("database or disk is full")."""
    from assay.store.fs import is_full

    return is_full(e) or "database or disk is full" in str(e)


def _full_error(e: BaseException) -> BaseException:
    from assay.store.fs import out_of_space

    where = getattr(e, "filename", None) or "the repository"
    return out_of_space(where) if not isinstance(e, AssayError) else e

