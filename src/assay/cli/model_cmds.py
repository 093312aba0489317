"""``assay model``: the model registry from the command line. Thin: parse, call assay.models, render."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer

from assay.cli._common import JsonOpt, _print_json, _repo, _short, _table, escape, out
from assay.cli._help import Typer
from assay.errors import InputError

app = Typer(help="The model registry: versions with lineage (data, code, parent), aliases, and which models "
                 "were trained on which data. Loading a pickle runs code: register only files you trust.",
            no_args_is_help=True)

def _json_option(text: str | None, option: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        example = '{"accuracy": 0.97}'
        raise InputError(f"{option} is not JSON: {e}; give an object, e.g. {option} '{example}'") from e
    if not isinstance(value, dict):
        raise InputError(f"{option} must be a JSON object (name: value), not {type(value).__name__}")
    return value


def _example(path: str | None) -> Any:
    if path is None:
        return None
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--example-input {path!r} is not a .npy array file: {e}") from e


@app.command()
def register(name: Annotated[str, typer.Argument(help="Model name.")],
             file: Annotated[str, typer.Argument(help="The model: a pickled or joblib scikit-learn model (.pkl, "
                                                      ".joblib; loading it runs code from the file, so only "
                                                      "register files you trust), an .onnx file, or a "
                                                      "torch.export program (.pt2).")],
             train: Annotated[str | None, typer.Option(metavar="DATASET@REV", help="The data it was trained on "
                                                       "(committed).")] = None,
             eval: Annotated[str | None, typer.Option(metavar="DATASET@REV", help="The data it was evaluated "
                                                      "on (needs the label column).")] = None,
             metrics: Annotated[str | None, typer.Option(metavar="JSON", help="Metrics, a JSON object.")] = None,
             params: Annotated[str | None, typer.Option(metavar="JSON", help="Parameters, a JSON object.")] = None,
             features: Annotated[str | None, typer.Option(metavar="COLUMNS", help="Comma-separated feature "
                                                          "columns, when the model does not know them.")] = None,
             label: Annotated[str | None, typer.Option(metavar="COLUMN", help="The label column (default: "
                                                       "label).")] = None,
             parent: Annotated[str | None, typer.Option(metavar="NAME@VERSION", help="The version it was "
                                                        "derived from.")] = None,
             example_input: Annotated[str | None, typer.Option(metavar="FILE", help="An example input (.npy), "
                                                               "for a torch program's signature.")] = None,
             profile: Annotated[bool, typer.Option("--profile", help="Also compute and store the monitoring "
                                                   "profile of the training data (assay monitor profile; needs "
                                                   "assay[monitor]).")] = False,
             as_json: JsonOpt = False) -> None:
    """Register FILE as the next version of model NAME, with its lineage."""
    from assay.models import register as do_register

    if profile and train is None:
        raise InputError("--profile profiles the training data: name it with --train DATASET@REV")
    v = do_register(_repo(), name, file, train=train, eval=eval, metrics=_json_option(metrics, "--metrics"),
                    params=_json_option(params, "--params"), example_input=_example(example_input),
                    features=[c.strip() for c in features.split(",")] if features else None, label=label,
                    parent=parent)
    if profile:
        from assay.monitor.profile import reference_profile

        reference_profile(_repo(), v.spec)
    if as_json:
        _print_json(v.to_dict())
        return
    data = f", trained on {v.lineage.train.dataset}@{v.lineage.train.rev}" if v.lineage.train else ""
    out.print(f"registered {escape(v.spec)} ({v.framework}, {_size(v.size)}{escape(data)})"
              + ("; its training data profiled for monitoring" if profile else ""), highlight=False)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List the registered models: versions, aliases, newest version."""
    from assay.models import list_models

    found = list_models(_repo())
    if as_json:
        _print_json([m.to_dict() for m in found])
        return
    if not found:
        out.print("No models yet: assay model register NAME FILE --train DATASET@REV", highlight=False)
        return
    table = _table("model", "versions", "aliases", "framework", "created", "metrics")
    for m in found:
        aliases = ", ".join(f"{a}->{n}" for a, n in sorted(m.aliases.items()))
        table.add_row(escape(m.name), str(m.versions), escape(aliases), m.latest.framework, _when(m.latest.created),
                      escape(_metrics(m.latest.metrics)))
    out.print(table)


@app.command()
def show(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION|@ALIAS]", help="The model version "
                                             "(default: the newest).")],
         as_json: JsonOpt = False) -> None:
    """Show a model version: signature, parameters, metrics, lineage, size."""
    from assay.models import describe

    view = describe(_repo(), spec)
    if as_json:
        _print_json(view.to_dict())
        return
    v = view.version
    rows = [("model", f"{v.spec} of {view.versions}" + (f" (aliases: {', '.join(view.aliases)})" if view.aliases
                                                          else "")),
            ("framework", f"{v.framework} {v.libraries.get(_library(v.framework), '')} ({v.model_class})"),
            ("created", f"{_when(v.created)} by {v.author}"),
            ("size", ", ".join(f"{a.name} {_size(a.bytes)}" for a in v.artifacts)),
            ("inputs", ", ".join(str(t) for t in v.signature.inputs) or "-"),
            ("outputs", ", ".join(str(t) for t in v.signature.outputs) or "-"),
            ("features", _features(v.signature.features)), ("label", v.signature.label or "-"),
            ("params", json.dumps(v.params, sort_keys=True) if v.params else "-"),
            ("metrics", _metrics(v.metrics) or "-"),
            ("trained on", _data(v.lineage.train)), ("evaluated on", _data(v.lineage.eval)),
            ("code", _code(v.lineage.code)),
            ("parent", f"{v.lineage.parent.spec}" + (f" ({v.lineage.derived_by})" if v.lineage.derived_by else "")
             if v.lineage.parent else "-")]
    rows += [(f"attached {k}", _attached(k, d)) for k, d in view.attached.items()]
    for key, value in rows:
        out.print(f"{key:<13} {escape(value)}", highlight=False, soft_wrap=True)


@app.command()
def diff(a: Annotated[str, typer.Argument(metavar="A", help="A model version, NAME[@VERSION|@ALIAS].")],
         b: Annotated[str, typer.Argument(metavar="B", help="Another version.")],
         as_json: JsonOpt = False) -> None:
    """How version B differs from A: parameters, metrics, data (sample counts), signature, size."""
    from assay.models import diff_models

    d = diff_models(_repo(), a, b)
    if as_json:
        _print_json(d.to_dict())
        return
    out.print(f"{escape(d.a)} -> {escape(d.b)}", highlight=False)
    for what, changes in (("param", d.params), ("metric", d.metrics), ("signature", d.signature)):
        for k, (x, y) in changes.items():
            delta = f" ({y - x:+.4g})" if isinstance(x, int | float) and isinstance(y, int | float) else ""
            out.print(f"  {what} {escape(k)}: {escape(_value(x))} -> {escape(_value(y))}{delta}", highlight=False)
    for role, c in d.data.items():
        out.print(f"  {role} data: {escape(_data_change(c))}", highlight=False)
    if d.size[0] != d.size[1]:
        out.print(f"  size: {_size(d.size[0])} -> {_size(d.size[1])}", highlight=False)
    if d.framework[0] != d.framework[1]:
        out.print(f"  framework: {d.framework[0]} -> {d.framework[1]}", highlight=False)


@app.command()
def alias(name: Annotated[str, typer.Argument(help="Model name.")],
          version: Annotated[str, typer.Argument(help="Version number (or an alias).")],
          alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to set, e.g. champion.")]) -> None:
    """Point ALIAS of model NAME at VERSION, atomically (one commit)."""
    from assay.models import set_alias

    n = set_alias(_repo(), name, version, alias_name)
    out.print(f"{escape(name)}@{escape(alias_name)} -> version {n}", highlight=False)


@app.command()
def lineage(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="The model version.")],
            as_json: JsonOpt = False) -> None:
    """Show where a version came from (data commit, code) and the versions derived from it."""
    from assay.models import model_lineage

    r = model_lineage(_repo(), spec)
    if as_json:
        _print_json(r.to_dict())
        return
    v = r.version
    for role, ref in (("train", v.lineage.train), ("eval", v.lineage.eval)):
        if ref is not None:
            out.print(f"data  {role}: {escape(_data(ref))}", highlight=False)
    out.print(f"code  {escape(_code(v.lineage.code))}", highlight=False)
    for depth, a in enumerate(reversed(r.ancestors)):
        out.print(f"{'  ' * depth}{escape(a.spec)}", highlight=False)
    here = len(r.ancestors)
    out.print(f"{'  ' * here}{escape(v.spec)}  <- this version", highlight=False)
    for depth, s, how in r.descendants:
        out.print(f"{'  ' * (here + depth)}-> {escape(s)}" + (f" ({escape(how)})" if how else ""), highlight=False)


@app.command("trained-on")
def trained_on(spec: Annotated[str, typer.Argument(metavar="DATASET@REV", help="A dataset version.")],
               sample: Annotated[str | None, typer.Option(metavar="ID", help="A sample: its id, or its key "
                                                          "value (single-column keys).")] = None,
               as_json: JsonOpt = False) -> None:
    """List the model versions whose training data holds DATASET@REV (or, with --sample, that sample)."""
    from assay.models import find_trained_on

    found = find_trained_on(_repo(), spec, sample=sample)
    if as_json:
        _print_json([t.to_dict() for t in found])
        return
    if not found:
        out.print(f"no registered model was trained on {escape(spec)}" + (f" sample {escape(sample)}" if sample
                                                                              else ""), highlight=False)
        return
    table = _table("model", "match", "training manifest")
    for t in found:
        table.add_row(escape(t.spec), t.match, _short(t.manifest))
    out.print(table)


@app.command()
def export(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="The version to export (default: "
                                               "the newest).")],
           format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="The format: onnx.")] = "onnx",
           atol: Annotated[float, typer.Option(metavar="TOL", help="Absolute tolerance of the verification.")] = 1e-4,
           rtol: Annotated[float, typer.Option(metavar="TOL", help="Relative tolerance of the verification.")] = 1e-3,
           as_json: JsonOpt = False) -> None:
    """Export a version to ONNX, verified against it on samples of its recorded data, as a new version."""
    from assay.models.ship import export_version

    r = export_version(_repo(), spec, format=format, atol=atol, rtol=rtol)
    if as_json:
        _print_json(r.to_dict())
        return
    v, new = r.verification, r.version
    agree = f", labels agree on {v.label_agreement:.1%}" if v.label_agreement is not None else ""
    out.print(f"exported {escape(r.parent.spec)} ({r.parent.framework}, {_size(r.parent.size)}) to {format}: "
              f"registered {escape(new.spec)} ({_size(new.size)}, {escape(r.export.converter)}, opset "
              f"{r.export.opset})", highlight=False, soft_wrap=True)
    out.print(f"verified on {v.samples} samples of {escape(r.samples_from)}: largest difference "
              f"{v.max_abs_diff:.3g} (atol {v.atol:g}, rtol {v.rtol:g}){agree}", highlight=False, soft_wrap=True)


@app.command()
def quantize(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="The version to quantise "
                                                 "(default: the newest; exported to ONNX first if need be).")],
             eval: Annotated[str | None, typer.Option(metavar="DATASET@REV", help="The data to measure the "
                                                      "metric on (default: the version's evaluation data).")] = None,
             budget: Annotated[float, typer.Option(
                 metavar="POINTS", help="The largest drop allowed, in points (accuracy, relative error in %, "
                 "or cosine in %).")] = 0.5,
             method: Annotated[str, typer.Option(
                 metavar="METHOD", help="dynamic, or static (QDQ, calibrated on the training data).")] = "dynamic",
             as_json: JsonOpt = False) -> None:
    """Quantise a version to INT8 within an accuracy budget; registers it with fp32 and INT8 metrics, or refuses."""
    from assay.models.ship import quantize_version

    r = quantize_version(_repo(), spec, eval=eval, budget=budget, method=method)
    if as_json:
        _print_json(r.to_dict())
        return
    q = r.result
    out.print(f"quantised {escape(r.parent.spec)} to INT8 ({q.method}, {q.chosen.remedy}): registered "
              f"{escape(r.version.spec)}", highlight=False, soft_wrap=True)
    out.print(f"  {'':<10} {'fp32':>12} {'int8':>12}", highlight=False)
    out.print(f"  {'size':<10} {_size(len(q.fp32_onnx)):>12} {_size(len(q.onnx)):>12}  ({q.size_ratio:.2f}x)",
              highlight=False)
    out.print(f"  {escape(q.metric):<10} {q.fp32_metric:>12.3f} {q.int8_metric:>12.3f}  (drop {q.drop:.3f} points, "
              f"budget {q.budget:g}, on {q.samples} samples of {escape(r.eval_from)})", highlight=False)


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise InputError(f"{option} takes comma-separated whole numbers, e.g. {option} 1,8,64; got {text!r}") from e
    if not values or min(values) < 1:
        raise InputError(f"{option} takes numbers >= 1, e.g. {option} 1,8,64; got {text!r}")
    return values


@app.command()
def bench(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="The version to benchmark.")],
          batch: Annotated[str, typer.Option(metavar="SIZES", help="Batch sizes, comma-separated.")] = "1,8,64",
          threads: Annotated[str, typer.Option(metavar="COUNTS", help="Thread counts, comma-separated.")] = "1,2",
          runs: Annotated[int, typer.Option(metavar="N", help="Timed runs per batch size and thread count.")] = 100,
          as_json: JsonOpt = False) -> None:
    """Benchmark a version on inputs drawn from its data; the results are stored with it (see model show)."""
    from assay.models.ship import bench_version

    r = bench_version(_repo(), spec, batches=_ints(batch, "--batch"), threads=_ints(threads, "--threads"),
                      runs=runs, warmup=min(10, runs))
    if as_json:
        _print_json(r.to_dict())
        return
    res = r.results
    load = res.get("load") or {}
    head = f"benchmarked {escape(r.version.spec)} ({r.version.framework}, {_size(r.version.size)}"
    if load:
        head += f", load {load['load_ms']:.1f} ms, peak memory to load {load['peak_load_mb']:.1f} MB"
    out.print(head + f") on rows of {escape(r.inputs_from)}; stored with the version", highlight=False,
              soft_wrap=True)
    table = _table("batch", "threads", "p50 ms", "p90 ms", "p99 ms", "samples/s")
    for x in res["results"]:
        table.add_row(str(x["batch"]), str(x["threads"]), f"{x['p50_ms']:.3f}", f"{x['p90_ms']:.3f}",
                      f"{x['p99_ms']:.3f}", f"{x['throughput']:.0f}")
    out.print(table)


@app.command()
def package(spec: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="The version to package.")],
            to: Annotated[str, typer.Option("--to", metavar="DIR|FILE.zip", help="Where to write the package: a "
                                            "folder, or a zip file.")],
            overwrite: Annotated[bool, typer.Option(help="Replace an existing package there.")] = False,
            as_json: JsonOpt = False) -> None:
    """Write an edge package: the ONNX model, signature, hashes and a runner needing only onnxruntime and numpy."""
    from assay.models.ship import package_version

    r = package_version(_repo(), spec, to, overwrite=overwrite)
    if as_json:
        _print_json(r.to_dict())
        return
    how = " (exported to ONNX for it)" if r.exported else ""
    out.print(f"packaged {escape(r.version.spec)}{how} into {escape(str(r.result.path))} "
              f"({_size(r.result.size)}: {', '.join(r.result.files)}); run: python predict.py input.json",
              highlight=False, soft_wrap=True)


def _attached(key: str, data: dict[str, Any]) -> str:
    if key == "bench" and isinstance(data.get("results"), list):
        return "; ".join(f"batch {x['batch']} x{x['threads']} thread(s): p50 {x['p50_ms']:.3f} ms, p99 "
                         f"{x['p99_ms']:.3f} ms, {x['throughput']:.0f}/s" for x in data["results"])
    return json.dumps(data, sort_keys=True)[:200]


def _library(framework: str) -> str:
    return {"sklearn": "scikit-learn"}.get(framework, framework)


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _metrics(m: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(m.items()))


def _value(x: Any) -> str:
    return "-" if x is None else json.dumps(x, sort_keys=True, default=str)[:80]


def _features(cols: tuple[str, ...]) -> str:
    if not cols:
        return "-"
    return ", ".join(cols[:8]) + (f", ... ({len(cols)} columns)" if len(cols) > 8 else "")


def _data(ref: Any) -> str:
    if ref is None:
        return "-"
    return f"{ref.dataset}@{ref.rev} (commit {ref.commit[:12]}, {ref.rows} samples, manifest {ref.manifest[:12]})"


def _code(code: dict[str, Any] | None) -> str:
    if not code:
        return "not in a git work tree"
    return f"git {str(code.get('git_commit'))[:12]}" + (" (dirty)" if code.get("dirty") else "")


def _data_change(c: dict[str, Any]) -> str:
    if c.get("same"):
        return f"same ({c['a']}, {c['rows_a']} samples)"
    if "added" in c:
        return (f"{c['a']} -> {c['b']}: +{c['added']} -{c['removed']} ~{c['changed']} samples "
                f"({c['rows_a']} -> {c['rows_b']})")
    return f"{c.get('a') or '-'} -> {c.get('b') or '-'}"
