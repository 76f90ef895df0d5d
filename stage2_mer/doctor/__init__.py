"""``facialmmt doctor``: a preflight check of a run before it starts (the command: :mod:`.cli`).

One module per concern, each adding OK / WARN / FAIL lines to the shared :class:`~.base.Checkup`:

* :mod:`.params`: every params.yaml section through its stage's loader, and the components it
  names through their registries' ``validate``;
* :mod:`.data`: the MELD folder, CSVs and clips, and the :class:`~.data.Workload` they give;
* :mod:`.weights`: every configured component (detector, speaking scorer, embedder, extractors)
  asked for the local files its config needs; :mod:`.training`: text encoder, FER checkpoint,
  Aff-Wild2 folder. Located, never loaded;
* :mod:`.machine`: GPU, CPU cores, free disk;
* :mod:`.estimate`: the run time per stage from :data:`~.estimate.RATES` and the stage-1 benchmark;
* :mod:`.pipeline`: what is read from ``dvc.yaml``; :mod:`.report`: :class:`Doctor`, the run in
  order and the text / JSON report.
"""

from __future__ import annotations

from .base import FAIL, OK, WARN, Check, Checkup
from .data import Workload
from .estimate import RATES, STAGE1_BENCHMARK, STAGE1_PARTS, Rate, stage1_benchmark_run
from .report import Doctor

__all__ = ["FAIL", "OK", "RATES", "STAGE1_BENCHMARK", "STAGE1_PARTS", "WARN", "Check", "Checkup", "Doctor", "Rate",
           "Workload", "stage1_benchmark_run"]
