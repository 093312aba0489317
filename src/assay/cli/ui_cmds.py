"""``assay ui``: the dashboard, served locally (read-only). Thin: parse, build ``assay.monitor.dashboard``'s app,
run it under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from assay.cli._common import _state, err


def ui(port: Annotated[int, typer.Option(metavar="PORT", help="Port.")] = 8001,
       host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to bind (default: this machine "
                                         "only; the page shows the whole repository to whoever reaches it).")
                       ] = "127.0.0.1") -> None:
    """Serve the dashboard (datasets, commits, models and lineage, serving metrics, drift, performance, alerts and
    the drill-down to samples) at http://HOST:PORT/ until interrupted. Read-only: writes get 405."""
    import uvicorn

    from assay.monitor.dashboard import create_app

    app = create_app(_state["repo"], host=host)
    err.print(f"dashboard on http://{host}:{port}/ (read-only; Ctrl-C stops it)", markup=False, highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
