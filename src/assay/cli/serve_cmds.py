"""``assay serve``: serve a model version over HTTP (uvicorn), and its API keys. Thin: parse, call assay.serve."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from assay.cli._common import JsonOpt, _print_json, _repo, _when, err, out
from assay.cli._help import Typer


class _ServeGroup(TyperGroup):
    """``assay serve NAME`` runs the server; ``assay serve keys ...`` manages keys: a first word that is not a
    subcommand is the model to serve."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


app = Typer(name="serve", cls=_ServeGroup, no_args_is_help=True,
            help="Serve a model: `assay serve NAME[@VERSION|@ALIAS] [--port 8000] [--no-auth]` answers "
                 "POST /v1/models/NAME/predict with adaptive micro-batching, metrics at /metrics, and logs every "
                 "prediction into the dataset predictions.NAME. `assay serve keys create|list|revoke NAME` "
                 "manages the API keys.")
keys_app = Typer(help="API keys of served models (stored hashed; a key is shown once, when created).",
                 no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command("run", hidden=True)
def run(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION|@ALIAS]", help="The version to serve.")],
        host: Annotated[str, typer.Option(metavar="ADDRESS",
                                          help="Address to bind (default: this machine only).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(metavar="PORT", help="Port.")] = 8000,
        workers: Annotated[int, typer.Option(metavar="N",
                                             help="Worker processes, each with its own model session.")] = 1,
        max_batch: Annotated[int, typer.Option(metavar="N", help="Most instances run together.")] = 64,
        max_wait_ms: Annotated[float, typer.Option(metavar="MS", help="Most a batch waits for company, only under "
                                                   "load (a lone request never waits).")] = 2.0,
        no_auth: Annotated[bool, typer.Option("--no-auth", help="Answer without API keys (local use).")] = False,
        no_log: Annotated[bool, typer.Option("--no-log", help="Do not log predictions.")] = False,
        log_durability: Annotated[str, typer.Option(metavar="sync|batch", help="sync: each prediction is fsynced "
                                                    "before it is answered; batch: fsynced every 50 ms (a power "
                                                    "loss can lose the last 50 ms; a killed server loses "
                                                    "nothing).")] = "sync",
        flush_seconds: Annotated[float, typer.Option(metavar="SECONDS",
                                                     help="Commit logged predictions this often.")] = 1.0,
        flush_rows: Annotated[int, typer.Option(metavar="N", help="... or once this many are buffered.")] = 10_000,
        timeout: Annotated[float, typer.Option(metavar="SECONDS",
                                               help="Seconds a request may wait for the model.")] = 10.0,
        max_body: Annotated[int, typer.Option(metavar="BYTES", help="Largest request body, in bytes.")] = 1 << 20,
        poll_seconds: Annotated[float, typer.Option(metavar="SECONDS",
                                                    help="How often an alias (or the newest version) is "
                                                    "checked for a move to another version; 0: never.")] = 2.0,
        shadow: Annotated[str | None, typer.Option(metavar="NAME[@VERSION|@ALIAS]", help="A version that gets a "
                                                   "copy of the traffic; its predictions are logged (in "
                                                   "predictions.NAME.shadow), not returned.")] = None,
        monitor_rules: Annotated[str | None, typer.Option(metavar="FILE", help="Evaluate these alert rules while "
                                                          "serving (default: the rules set with `assay monitor "
                                                          "rules set`, if any).")] = None,
        monitor_every: Annotated[float, typer.Option(metavar="SECONDS", help="How often the alert rules are "
                                                     "evaluated.")] = 60.0,
        no_monitor: Annotated[bool, typer.Option("--no-monitor", help="Do not evaluate alert rules.")] = False
        ) -> None:
    """Serve NAME[@VERSION|@ALIAS] until interrupted."""
    import uvicorn

    from assay.errors import InputError
    from assay.serve.app import CONFIG_ENV, load_served
    from assay.serve.log import DURABILITY, dataset_name

    if log_durability not in DURABILITY:
        raise InputError(f"--log-durability must be one of {', '.join(DURABILITY)}, not {log_durability!r}")
    repo = _repo()
    with repo:
        served = load_served(repo, spec)  # errors come out here, once, before any worker starts
        root = str(repo.root)
    config = {"repo": root, "spec": spec, "max_batch": max_batch, "max_wait_ms": max_wait_ms, "auth": not no_auth,
              "log": not no_log, "flush_seconds": flush_seconds, "flush_rows": flush_rows, "timeout_s": timeout,
              "max_body": max_body, "poll_seconds": poll_seconds, "log_durability": log_durability,
              "shadow": shadow}
    factory = "assay.serve.app:app_from_env"
    if not no_monitor:  # the monitor layer wraps the app: rules evaluated in the background, gauges on /metrics
        from assay.monitor.rules import load_rules

        if monitor_rules is not None:
            load_rules(monitor_rules)  # a bad file is an error here, before any worker starts
        config["monitor"] = {"monitor_rules": str(Path(monitor_rules).resolve()) if monitor_rules else None,
                             "monitor_every": monitor_every}
        factory = "assay.monitor.serving:app_from_env"
    os.environ[CONFIG_ENV] = json.dumps(config)
    v = served.version
    err.print(f"serving {v.spec} on http://{host}:{port}/v1/models/{v.name}/predict ({workers} worker(s))",
              markup=False, highlight=False)
    err.print("auth: OFF (--no-auth): anyone who can reach this address can predict" if no_auth else
              f"auth: API keys (create one with `assay serve keys create {v.name}`)", markup=False, highlight=False)
    shown = "off" if no_log else f"dataset {dataset_name(v.name)} (durability: {log_durability})"
    err.print(f"log: {shown}", markup=False, highlight=False)
    watched = "off (--no-monitor)" if no_monitor else \
        f"every {monitor_every:g} s, rules from {monitor_rules or f'`assay monitor rules set {v.name}` (none: idle)'}"
    err.print(f"monitor: {watched}", markup=False, highlight=False)
    uvicorn.run(factory, factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


def _keys() -> Any:
    from assay.serve.keys import KeyStore

    with _repo() as repo:
        return KeyStore(repo.dir)


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The model.")]
KeyName = Annotated[str, typer.Option("--name", metavar="KEY", help="The key's name (recorded with each prediction).")]


@keys_app.command()
def create(model: NameArg, name: KeyName = "default") -> None:
    """Create an API key for model NAME and print it (once: only its hash is kept)."""
    store = _keys()
    try:
        token = store.create(model, name)
    finally:
        store.close()
    err.print(f"key {name!r} for model {model!r} (shown once; send it as `Authorization: Bearer KEY`):",
              markup=False, highlight=False)
    out.print(token, markup=False, highlight=False)


@keys_app.command("list")
def list_(model: Annotated[str | None, typer.Argument(metavar="NAME", help="The model (default: all).")] = None,
          as_json: JsonOpt = False) -> None:
    """List API keys (names and dates, never the keys)."""
    store = _keys()
    try:
        keys = store.list(model)
    finally:
        store.close()
    if as_json:
        _print_json([k.to_dict() for k in keys])
        return
    table = Table("model", "name", "created", "revoked")
    for k in keys:
        table.add_row(k.model, k.name, _when(k.created), _when(k.revoked) if k.revoked else "-")
    out.print(table)


@keys_app.command()
def revoke(model: NameArg, name: KeyName = "default") -> None:
    """Revoke an API key of model NAME: requests with it get 403 from then on."""
    store = _keys()
    try:
        store.revoke(model, name)
    finally:
        store.close()
    out.print(f"revoked key {name!r} of model {model!r}", markup=False, highlight=False)



predictions_app = Typer(name="predictions", no_args_is_help=True,
                        help="The prediction logs of served models (datasets predictions.NAME): join labels that "
                             "arrive later by request id.")


@predictions_app.command("label")
def label_cmd(model: NameArg,
              file: Annotated[str, typer.Argument(metavar="FILE", help="A file of labels (.csv, .parquet, .jsonl, "
                                                  "...).")],
              id_column: Annotated[str, typer.Option(metavar="COLUMN",
                                                     help="Column of FILE holding the request id.")] = "request_id",
              label_column: Annotated[str, typer.Option(metavar="COLUMN",
                                                        help="Column of FILE holding the label.")] = "label",
              as_json: JsonOpt = False) -> None:
    """Join the labels in FILE to the logged predictions of NAME (into predictions.NAME.labels)."""
    from assay.serve.labels import label

    with _repo() as repo:
        result = label(repo, model, file, id_column=id_column, label_column=label_column)
    if as_json:
        _print_json(result.to_dict())
        return
    out.print(f"labelled {result.labelled} predictions in {result.dataset} ({result.matched} matched, "
              f"{result.unknown} ids not in the log)", markup=False, highlight=False)
