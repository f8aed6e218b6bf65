"""The command line's option types and checks, one of each, shared by every command.

Each is an ``argparse`` type: a bad value is reported by argparse as a usage error (exit code 2) before any work
starts, naming the option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def size(text: str) -> tuple[int, int]:
    """'256x512' -> (256, 512); at least 16x16."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 256x512), got {text!r}")
    h, w = (int(p) for p in parts)
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return h, w


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative(text: str) -> int:
    """An integer >= 0 (a seed, a count that may be zero, FGFA's window K)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def positive(text: str) -> int:
    """An integer >= 1 (a key-frame interval, a number of frames or iterations)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def positive_number(text: str) -> float:
    """A number > 0 (a frame rate, a time limit in minutes)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (a score threshold)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def named_path(text: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, PATH)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def report_stem(text: str) -> str:
    """A report's file name without extension ('flow_pwcnet'): letters, digits, '_' and '-' only, so that it
    names files inside the report folder and nowhere else."""
    if not text or not all(c.isalnum() or c in "_-" for c in text):
        raise argparse.ArgumentTypeError(f"a report name takes letters, digits, '_' and '-' only, got {text!r}")
    return text


def command_line() -> str:
    """The command as typed, for reports to say how to reproduce them."""
    return "featflow " + " ".join(sys.argv[1:])


def resize(text: str) -> tuple[int, int]:
    """'600x1000' -> (600, 1000): a shorter side and the longer side's limit, each at least 16."""
    try:
        return size(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected SHORTxLONG (e.g. 600x1000), each at least 16, got {text!r}") \
            from None
