"""Where a detector's training diverges: resume a checkpoint and log every iteration, then report.

  python scripts/divergence_diagnostic.py run RUN_FOLDER COPY STOP CONFIG [--set KEY=VALUE ...]
      copies RUN_FOLDER (a training output with its checkpoint) to COPY, resumes it there up to iteration STOP and
      writes COPY/steps.jsonl: per iteration, each loss term, the gradient norm (before clipping) of the whole model
      and of its parts (N_feat, its feat_conv, the RPN, R-FCN's class and box maps) and the parts' weight norms.
  python scripts/divergence_diagnostic.py report REPORTS NAME=COPY [NAME=COPY ...]
      writes REPORTS/training_divergence.{md,json,png} from the copies' logs.

The run patches two functions for its own process only (the detector's loss sum, to see the terms, and the gradient
clipping, to see the norm before it clips); the training itself is featflow's, resumed as ``--resume`` does.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

PARTS = ("feature_net", "feature_net.feat_conv", "head.rpn", "head.rfcn.cls_maps", "head.rfcn.box_maps")
SHORT = {"feature_net": "feat", "feature_net.feat_conv": "featconv", "head.rpn": "rpn",
         "head.rfcn.cls_maps": "rfcn_cls", "head.rfcn.box_maps": "rfcn_box"}
TERMS = ("rpn_objectness", "rpn_box", "rfcn_cls", "rfcn_box")


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.stack([t.detach().float().norm() for t in tensors]).norm()) if tensors else 0.0


def run(source: Path, copy: Path, stop: int, config: str, overrides: list[str]) -> None:
    import featflow.engine.det_training as det_training
    from featflow.cli import main
    from featflow.engine import trainer

    if copy.exists():
        raise SystemExit(f"{copy} exists: give a new folder")
    shutil.copytree(source, copy)
    log = (copy / "steps.jsonl").open("a")
    record: dict[str, float] = {}
    models: list[nn.Module] = []

    sum_terms = det_training.total_loss

    def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
        record.update({k: float(v.detach()) for k, v in losses.items()})
        return sum_terms(losses)

    clip = torch.nn.utils.clip_grad_norm_

    def clip_and_record(params, max_norm, *args, **kwargs):
        params = list(params)
        model = models[0]
        for part in PARTS:
            grads = [p.grad for p in model.get_submodule(part).parameters() if p.grad is not None]
            record["g_" + SHORT[part]] = _norm(grads)
        norm = clip(params, max_norm, *args, **kwargs)
        record["grad_norm"] = float(norm)
        return norm

    class StepLog(trainer.HookBase):
        def after_step(self) -> None:
            t = self.trainer
            for part in PARTS:
                record["w_" + SHORT[part]] = _norm(list(t.model.get_submodule(part).parameters()))
            record["it"], record["lr"] = t.iteration, t.optimizer.param_groups[-1]["lr"]
            log.write(json.dumps(record) + "\n")
            log.flush()
            if t.iteration >= stop:
                t.stop_reason = f"diagnostic stop at iteration {stop}"

    train = trainer.Trainer.train

    def train_with_log(self: trainer.Trainer) -> trainer.TrainResult:
        models.append(self.task.model)
        self.register(StepLog())
        return train(self)

    det_training.total_loss = total_loss
    torch.nn.utils.clip_grad_norm_ = clip_and_record
    trainer.Trainer.train = train_with_log
    sets = [arg for item in overrides for arg in ("--set", item)]
    main(["--threads", "2", "train", "det", "--quiet", "--config", config, "--out", str(copy), "--resume", *sets])


def report(folder: Path, arms: dict[str, Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from featflow.analysis.reports import machine_description, write_report
    from featflow.utils.io import atomic_path

    logs = {name: [json.loads(line) for line in (path / "steps.jsonl").read_text().splitlines()]
            for name, path in arms.items()}
    lines = ["# Training divergence: where a long detection run blows up", "",
             "The per-frame R-FCN of `vid_frame_r18_plateau` without `backbone_until` (ResNet-18 N_feat with frozen "
             "BatchNorm statistics at 0.1x the rate, SGD with momentum, lr 0.012 in a 4000-iteration cosine, "
             "bfloat16 autocast) diverged at iteration 2931, where the rate was 0.0022. Each arm resumes its "
             "iteration-2750 checkpoint and logs every iteration: the loss terms, the gradient norm before clipping "
             "(the trainer clips at 10) of the whole model and of N_feat, and the weight norm of R-FCN's class maps.",
             ""]
    summary = {}
    for name, rows in logs.items():
        peak = max(rows, key=lambda r: r["grad_norm"])
        summary[name] = {"iterations": [rows[0]["it"], rows[-1]["it"]],
                         "grad_norm_first_10": sum(r["grad_norm"] for r in rows[:10]) / 10,
                         "grad_norm_max": peak["grad_norm"], "at": peak["it"],
                         "nfeat_share_at_max": peak["g_feat"] / peak["grad_norm"],
                         "rfcn_cls_max": max(r["rfcn_cls"] for r in rows),
                         "rfcn_cls_weight": [rows[0]["w_rfcn_cls"], rows[-1]["w_rfcn_cls"]]}
    lines += ["| arm | iterations | grad norm, first 10 | grad norm, max (at) | N_feat's share of it | "
              "R-FCN class loss, max | R-FCN class weights' norm |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['iterations'][0]}-{s['iterations'][1]} | {s['grad_norm_first_10']:.1f} | "
                     f"{s['grad_norm_max']:.1f} ({s['at']}) | {100 * s['nfeat_share_at_max']:.0f}% | "
                     f"{s['rfcn_cls_max']:.2f} | {s['rfcn_cls_weight'][0]:.2f} to {s['rfcn_cls_weight'][1]:.2f} |")
    lines += ["", "## What it shows", ""]
    for name, s in summary.items():
        lines.append(f"- {name}: the gradient norm went from {s['grad_norm_first_10']:.1f} (the first 10 iterations' "
                     f"mean) to {s['grad_norm_max']:.1f} at iteration {s['at']}, {100 * s['nfeat_share_at_max']:.0f}% "
                     f"of it N_feat's; the R-FCN class loss peaked at {s['rfcn_cls_max']:.2f}.")
    lines += ["- The blow-up runs through N_feat: with N_feat's rate near 0 the loss held, at the same rates for the "
              "heads. The gradient reaching N_feat still grew, as the R-FCN class weights grew alike in both arms "
              "(their norm is in the table): the heads sharpen the loss around N_feat's features, and N_feat moving "
              "along that sharp direction is what diverges.",
              "- The recipe that follows (`backbone_until: 0.5` in `vid_frame_r18_plateau`): N_feat trains end to end "
              "for the first half of the run, while held-out mAP still rose and its feature scale held, then stays "
              "fixed. Whether that holds to the run's end is the full run's test (reports/detection_vid_plateau.md).",
              "", "Every 5th iteration:", ""]
    for name, rows in logs.items():
        lines += [f"### {name}", "", "| iteration | lr | rfcn_cls | rfcn_box | grad norm | N_feat's | feat_conv's | "
                  "R-FCN class maps' |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['it']} | {r['lr']:.5f} | {r['rfcn_cls']:.2f} | {r['rfcn_box']:.2f} | {r['grad_norm']:.1f} | "
                  f"{r['g_feat']:.1f} | {r['g_featconv']:.1f} | {r['g_rfcn_cls']:.2f} |" for r in rows[::5]]
        lines.append("")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in logs.items():
        its = [r["it"] for r in rows]
        axes[0].plot(its, [r["grad_norm"] for r in rows], label=name)
        axes[1].plot(its, [r["rfcn_cls"] for r in rows], label=name)
    axes[0].set(yscale="log", xlabel="iteration", ylabel="gradient norm before clipping")
    axes[1].set(xlabel="iteration", ylabel="R-FCN class loss")
    axes[0].axhline(10, color="grey", lw=0.8, ls="--")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    with atomic_path(folder / "training_divergence.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    lines += ["![gradient norm and class loss](training_divergence.png)"]
    write_report(folder, "training_divergence", "\n".join(lines),
                 {"summary": summary, "steps": logs, "machine": machine_description()},
                 "bash scripts/divergence_experiment.sh")


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "run":
        extra = sys.argv[6:]
        if extra[::2] != ["--set"] * (len(extra) // 2) or len(extra) % 2:
            raise SystemExit("extra arguments: --set KEY=VALUE, repeated")
        run(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5], extra[1::2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "report":
        report(Path(sys.argv[2]), {a.split("=", 1)[0]: Path(a.split("=", 1)[1]) for a in sys.argv[3:]})
    else:
        raise SystemExit(__doc__)
