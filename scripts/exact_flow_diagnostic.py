"""The exact-flow diagnostic now lives in ``benchmarks/exact_flow_diagnostic.py``; this path still runs it, so the
command that ``reports/detection_exact_flow.md`` records keeps reproducing it."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "exact_flow_diagnostic.py"),
                   run_name="__main__")
