"""Table cells the reports share: a percentage, and a difference with its bootstrap interval."""

from __future__ import annotations


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal; '-' when there is none."""
    return "-" if value is None else f"{100 * value:.1f}"


def difference(d: dict) -> str:
    """A ``Difference.to_json()`` (points) as 'delta [low, high]'; '-' when undefined."""
    return "-" if d["delta"] is None else f"{d['delta']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"
