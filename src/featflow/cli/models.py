"""``featflow models``: the shipped models, with their task, methods, size and benchmark figures."""

from __future__ import annotations

import argparse

from featflow.registry import shipped_models


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the shipped models, with their task, methods, size and benchmark figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    for m in shipped_models():
        figures = ", ".join(f"{k} {v}" for k, v in m.benchmark.items() if k != "source")
        print(f"{m.name}  [{m.task}; {', '.join(m.methods)}; trained at {m.size[0]}x{m.size[1]}]\n  {m.description}"
              + (f"\n  {figures} ({m.benchmark['source']})" if figures else ""))
