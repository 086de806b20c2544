"""What a stage process pays before its work: each import of the stack timed in a fresh
interpreter (`python -c`), the median of a few, in turns. torch's optimizers import
`torch._dynamo` (the first `torch.optim` optimizer built), so that is timed after torch."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from benchmarks.timing import spread

# (what, the code timed after `setup` in the same fresh interpreter, setup)
IMPORTS = (
    ("torch", "import torch", ""),
    ("torch._dynamo (the first torch.optim optimizer)",
     "torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)", "import torch"),
    ("mlflow", "import mlflow", ""),
    ("mlflow's sqlite store opened", "mlflow.MlflowClient('sqlite:///' + d + '/m.db')"
     ".search_experiments()", "import mlflow, tempfile; d = tempfile.mkdtemp()"),
    ("sklearn.metrics", "import sklearn.metrics", ""),
    ("matplotlib.pyplot", "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot",
     ""),
)


def _once(code: str, setup: str) -> float:
    prog = (f"{setup}\nimport time\nt0 = time.perf_counter()\n{code}\n"
            "print(time.perf_counter() - t0)")
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True,
                         env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    return float(out.stdout.strip().splitlines()[-1])


def bench_imports(repeats: int = 3) -> dict[str, Any]:
    """{what: {median_s, min_s, max_s, runs}} of each import, `repeats` fresh interpreters each,
    taken in turns."""
    times: dict[str, list[float]] = {what: [] for what, _, _ in IMPORTS}
    for _ in range(repeats):
        for what, code, setup in IMPORTS:
            times[what].append(_once(code, setup))
    return {what: spread(t) for what, t in times.items()}
