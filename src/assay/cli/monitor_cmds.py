"""``assay monitor``: drift, performance and alerts of a served model against the data it was trained on.

Thin: parse, call ``assay.monitor``, render. Each part of the monitor layer has its section below.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assay.cli._help import Typer

app = Typer(name="monitor", no_args_is_help=True,
            help="Monitor a served model: `assay monitor drift NAME` compares its logged inputs and predictions "
                 "with its training version, `assay monitor performance NAME` gives realised and estimated "
                 "metrics, `assay monitor run NAME` evaluates the alert rules.")

# -- profiles and drift ----------------------------------------------------------------------------------------

_ModelArg = Annotated[str, typer.Argument(metavar="NAME[@VERSION|@ALIAS]", help="The model version.")]
_ReferenceOpt = Annotated[str | None, typer.Option("--reference", metavar="DATASET@REV",
                                                   help="Compare with this dataset version instead of the "
                                                        "version's training data.")]


@app.command("profile")
def profile_cmd(spec: _ModelArg, reference: _ReferenceOpt = None,
                json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
                ) -> None:
    """Compute and store the reference profile of a model version (its training data, or --reference): the
    sketches drift compares production with. `assay monitor drift` computes it when missing."""
    from assay.cli._common import _print_json, _repo, escape, out
    from assay.monitor.profile import reference_key, reference_profile, stored_profiles

    repo = _repo()
    profile = reference_profile(repo, spec, reference=reference, recompute=True)
    from assay.models import registry

    mv = registry.get(repo, spec)
    entry = stored_profiles(repo, mv)[reference_key(repo, mv, reference)[0]]
    kinds: dict[str, list[str]] = {}
    for c in profile.columns.values():
        kinds.setdefault(c.kind, []).append(c.name)
    if json_out:
        _print_json({"model": mv.spec, "reference": profile.meta.get("reference"), "rows": profile.rows,
                     "object": entry["oid"], "columns": {k: v for k, v in kinds.items()},
                     "pca_components": len(profile.pca.components) if profile.pca else 0,
                     "predictions": profile.meta.get("predictions")})
        return
    parts = ", ".join(f"{len(v)} {k}" for k, v in kinds.items())
    pca = f"; PCA of {len(profile.pca.columns)} features, {len(profile.pca.components)} components" \
        if profile.pca else ""
    out.print(f"profiled {escape(str(profile.meta.get('reference')))} for {escape(mv.spec)}: {profile.rows:,} rows, "
              f"{parts} column(s){pca}; predictions: {escape(str(profile.meta.get('predictions')))}; stored as "
              f"{entry['oid'][:12]}", highlight=False, soft_wrap=True)


@app.command("drift")
def drift_cmd(spec: _ModelArg,
              window: Annotated[str | None, typer.Option(metavar="1h|10000", help="The last rows of the log: a "
                                                         "duration (1h, 30m, 2d) or a row count.")] = None,
              since: Annotated[str | None, typer.Option(metavar="TIME", help="Only rows logged since then: ISO "
                                                        "8601, seconds since the epoch, or a duration ago.")] = None,
              reference: _ReferenceOpt = None,
              thresholds: Annotated[str | None, typer.Option(metavar="FILE", help="YAML of thresholds (psi: 0.2, "
                                                             "alpha: 0.01; per feature under features).")] = None,
              json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
              html_file: Annotated[str | None, typer.Option("--html", metavar="FILE",
                                                            help="Also write an HTML report.")] = None) -> None:
    """Drift of a served model's logged inputs and predictions against its training version (or --reference):
    PSI, Kolmogorov-Smirnov and Wasserstein for numbers, chi-squared and Jensen-Shannon for categories, an
    embedding distance for text, and PCA reconstruction error over all features."""
    from assay.cli._common import _output, _print_json, _repo, err
    from assay.monitor.drift import drift

    report = drift(_repo(), spec, window=window, since=since, reference=reference, thresholds=thresholds)
    if html_file:
        from assay.report import drift_report_html

        _output(html_file).write_text(drift_report_html(report), encoding="utf-8")
        err.print(f"wrote {html_file}")
    if json_out:
        _print_json(report.to_dict())
        return
    _print_drift(report)


def _print_drift(report: Any) -> None:
    from assay.cli._common import _table, escape, out

    table = _table("", "feature", "kind", "metrics", "p-value", "rows", "nulls")
    for f in sorted(report.features, key=lambda f: (not f.drifted, f.feature)):
        metrics = ", ".join(f"{m} {v:.3f}" for m, v in f.values.items()) or f.note
        table.add_row("[red]DRIFT[/]" if f.drifted else "ok", escape(f.feature), f.kind, escape(metrics),
                      "" if f.p_value is None else f"{f.p_value:.2g}", f"{f.rows:,}", f"{f.nulls:,}")
    out.print(f"{escape(report.model)}: {report.rows:,} production rows ({escape(report.window)}) against "
              f"{escape(report.reference)}", highlight=False, soft_wrap=True)
    out.print(table)
    drifted = report.drifted
    out.print(f"{len(drifted)} of {len(report.features)} drifted" + (f": {escape(', '.join(drifted))}" if drifted
                                                                     else ""), highlight=False, soft_wrap=True)


# -- performance -----------------------------------------------------------------------------------------------

# -- alerts ----------------------------------------------------------------------------------------------------

# -- explain ---------------------------------------------------------------------------------------------------
