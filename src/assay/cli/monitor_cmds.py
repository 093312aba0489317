"""``assay monitor``: drift, performance and alerts of a served model against the data it was trained on.

Thin: parse, call ``assay.monitor``, render. Each part of the monitor layer has its section below.
"""

from __future__ import annotations

from assay.cli._help import Typer

app = Typer(name="monitor", no_args_is_help=True,
            help="Monitor a served model: `assay monitor drift NAME` compares its logged inputs and predictions "
                 "with its training version, `assay monitor performance NAME` gives realised and estimated "
                 "metrics, `assay monitor run NAME` evaluates the alert rules.")

# -- profiles and drift ----------------------------------------------------------------------------------------

# -- performance -----------------------------------------------------------------------------------------------

# -- alerts ----------------------------------------------------------------------------------------------------

# -- explain ---------------------------------------------------------------------------------------------------
