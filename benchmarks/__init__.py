"""This repository's experiment harness: the benchmarks behind ``reports/`` (flow, synthetic data, difficulty,
segmentation and detection reports, the exact-flow diagnostic) and their plans (``plans/*.yaml``).

It is not part of the installed package: ``featflow bench seg|det|flow|synth|difficulty`` imports it from a
source checkout (``featflow.cli.bench``). It builds on the library only; nothing in ``featflow`` imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

#: The report plans, one YAML file each: ``featflow bench det --plan NAME`` reads ``plans/NAME.yaml``.
PLANS = Path(__file__).resolve().parent / "plans"

T = TypeVar("T")


def plan_names() -> list[str]:
    """The plans kept here, by name."""
    return sorted(p.stem for p in PLANS.glob("*.yaml"))


def plan_path(source: str | os.PathLike) -> Path:
    """A plan as a file: ``source`` as a path if it is one, else ``plans/{source}.yaml``."""
    from featflow.errors import MissingInput

    path = Path(source)
    if path.is_file():
        return path
    named = PLANS / f"{source}.yaml"
    if named.is_file():
        return named
    raise MissingInput(f"no plan file {source} (and no plan of that name in {PLANS}: {', '.join(plan_names())})")


def load_plan(cls: type[T], source: str | os.PathLike) -> T:
    """Read a report plan (a YAML path or the name of one in ``plans/``) into its dataclass ``cls``, checked as
    every config is (``featflow.engine.config.load_config``)."""
    from featflow.engine.config import load_config

    return load_config(cls, plan_path(source), kind="reports")
