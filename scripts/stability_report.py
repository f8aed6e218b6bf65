"""Writes reports/training_stability.{md,json} from the runs of scripts/stability_experiment.sh: per setting, the
held-out mAP and the standard deviation of N_feat's features (and DFF's scale-field mean) at each evaluation."""

import json
import sys
from pathlib import Path

from featflow.analysis.reports import machine_description, write_report


def main(runs: Path, report: Path) -> None:
    rows = {}
    for metrics in sorted(runs.glob("*/metrics.json")):
        data = json.loads(metrics.read_text())
        train, model = data["config"]["train"], data["config"]["model"]
        rows[metrics.parent.name] = {
            "optimizer": train["optimizer"], "lr": train["lr"], "backbone_lr": train["backbone_lr"],
            "norm": model["norm"], "precision": train["precision"],
            "init": model.get("init") or model.get("features_init"),
            "freeze_features": model["freeze_features"], "minutes": data["wall_seconds"] / 60,
            "history": [{k: h[k] for k in ("iteration", "val_map", "feat_std", "scale_mean") if k in h}
                        for h in data["history"]]}
    lines = ["# Training stability: what keeps N_feat's feature scale when it trains", "",
             "Per-frame R-FCN on the 192x384 shapes data (N_feat from the shipped segmenter, trained unless noted) and "
             "DFF from the shipped DFF detector; batch 8, warm-up 20 then cosine; held-out mAP on 64 frames (noisy, "
             "about +-1 point at these lengths). `feat_std`: the standard deviation of N_feat's output features on "
             "the held-out frames (5.2 before training).", "",
             "| run | optimizer | lr | N_feat lr x | norm | precision | val mAP % / feat_std at each evaluation |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        curve = " ; ".join(f"{h['iteration']}: {100 * h['val_map']:.1f} / {h['feat_std']:.3g}"
                           + (f" (scale {h['scale_mean']:.4f})" if "scale_mean" in h else "") for h in r["history"])
        lines.append(f"| {name}{' (N_feat fixed)' if r['freeze_features'] else ''} | {r['optimizer']} | {r['lr']} | "
                     f"{r['backbone_lr']} | {r['norm']} | {r['precision']} | {curve} |")
    write_report(report, "training_stability", "\n".join(lines), {"runs": rows, "machine": machine_description()},
                 "bash scripts/stability_experiment.sh")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
