"""The ``assay`` command line: a thin adapter that parses, calls the library once, and renders.

This module holds the root command and the error boundary (``main``); the commands live in one module per group
(repo_cmds, data_cmds, check_cmds, upkeep_cmds, gate_cmds, ...), each imported here and none importing this one.
Errors from the library are turned into one-line messages at this single boundary.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from assay.cli import (
    check_cmds,
    data_cmds,
    gate_cmds,
    model_cmds,
    monitor_cmds,
    remote_cmds,
    repo_cmds,
    serve_cmds,
    ui_cmds,
    upkeep_cmds,
)
from assay.cli._common import RepoOpt, _progress, _state, err, escape, out
from assay.cli._help import Typer
from assay.errors import AssayError, MergeConflict

EXIT_CODES = """Exit codes: 0 done; 1 an error, a failed check or fsck, or a batch the gate rejected;
2 a usage error (unknown command or option, missing argument); 3 a merge conflict; 130 interrupted."""

app = Typer(help="assay: version control, tests and monitoring for ML data and models.",
            epilog=EXIT_CODES, no_args_is_help=True, add_completion=False, rich_markup_mode=None)



def _version(value: bool) -> None:
    if value:
        from assay import __version__  # the package's own (importlib.metadata costs more than the rest of it)

        out.print(f"assay {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(repo: RepoOpt = ".",
          _: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False) -> None:
    _state["repo"] = repo


for _group in (repo_cmds, data_cmds, upkeep_cmds, check_cmds, gate_cmds, remote_cmds):
    app.add_typer(_group.app)
app.add_typer(check_cmds.suite_app, name="suite")
app.add_typer(gate_cmds.quarantine_app, name="quarantine")
app.add_typer(remote_cmds.remote_app, name="remote")
app.add_typer(model_cmds.app, name="model")
app.add_typer(monitor_cmds.app, name="monitor")
app.add_typer(serve_cmds.app, name="serve")
app.add_typer(serve_cmds.predictions_app, name="predictions")
app.command("ui")(ui_cmds.ui)


@app.command()
def quickstart(path: Annotated[str, typer.Option(metavar="FOLDER",
                                                 help="Folder for the demo repository.")] = "assay-quickstart"
               ) -> None:
    """Build a demo repository from bundled data (scikit-learn digits) and show what assay does."""
    from assay.cli.quickstart import run

    with _progress() as report:
        for line in run(Path(path), progress=report):
            out.print(line, markup=False, highlight=False, soft_wrap=True)


_ROOT_VALUE_OPTIONS = ("--repo", "-C")


def for_command(argv: Sequence[str]) -> typer.Typer:
    """The root app reduced to the one command or group ``argv`` names (the whole app when it names none).

    Typer turns every registered function into a click command before it parses anything (signatures, type
    hints evaluated, parameters built: 0.09 s for the ~65 commands, paid by every process), while a process
    runs one. The reduced app parses, validates and prints help for that command exactly as the whole one;
    ``assay --help``, a misspelled command (whose error suggests the right one) and anything unusual get the
    whole app.
    """
    word = _command_word(argv)
    if word is None:
        return app
    pruned = copy.copy(app)
    pruned.registered_commands = [c for c in app.registered_commands if _name_of(c) == word]
    pruned.registered_groups = []
    for group in app.registered_groups:
        if isinstance(group.name, str):  # a named group: `assay model ...`
            if group.name == word:
                pruned.registered_groups.append(group)
        elif group.typer_instance is not None:  # commands added at the top level: `assay add ...`
            pruned.registered_commands += [c for c in group.typer_instance.registered_commands
                                           if _name_of(c) == word]
    return pruned if pruned.registered_commands or pruned.registered_groups else app


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


def main() -> None:
    """Entry point: run the app, turning assay errors and usage errors into messages and exit codes."""
    _state["process"] = True  # the assay process itself (see _common._arrow_without_pandas)
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


def _disk_full(e: BaseException) -> bool:
    """A full filesystem seen by the store (OSError ENOSPC) or by SQLite ("database or disk is full")."""
    from assay.store.fs import is_full

    return is_full(e) or "database or disk is full" in str(e)


def _full_error(e: BaseException) -> BaseException:
    from assay.store.fs import out_of_space

    where = getattr(e, "filename", None) or "the repository"
    return out_of_space(where) if not isinstance(e, AssayError) else e

