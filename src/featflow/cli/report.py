"""``featflow report``: one self-contained HTML page from a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page from a run folder (tables, plots, videos)",
                       description="Gather a run folder's Markdown summaries (tables), plots and pictures (PNG) and "
                                   "videos (MP4) into one HTML page with everything inlined, e.g. featflow report "
                                   "featflow_demo or featflow report reports.")
    p.add_argument("folder", type=Path, help="a run folder: the demo's output, reports/, ...")
    p.add_argument("--out", type=Path, default=None, help="the page (default FOLDER/report.html)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from featflow.apps.html import write_html_report

    print(f"wrote {write_html_report(args.folder, args.out, args.title)}")
