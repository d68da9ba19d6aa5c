"""Compose ``benchmarks/results/pretrain_step_memory_cpu.{md,json}`` (issue 21) from the JSON files the
runs named in that markdown wrote with ``--json outputs/mem21/NAME.json``; a run whose file is missing (a
fresh clone) is taken from the committed ``pretrain_step_memory_cpu.json``, and one in neither leaves its
section out::

    python benchmarks/pretrain_step_memory_report.py
"""

import json
from pathlib import Path

from fourdcontrast.train.benchmark import format_backbone, format_interleaved, format_report

RUNS = Path("outputs/mem21")
RESULTS = Path("benchmarks/results")
STEP = "python benchmarks/pretrain_step.py"

SUMMARY = """**Summary.** The paper step (MinkUNet34 3D at 2 cm on 4 frames + MinkUNet14 4D at 5 cm) needs
6.18 GiB per sequence unswitched and **2.13 GiB** with all four switches (batch 2; 2.25 at batch 1), at
**1.30×** the unswitched step time interleaved on the Xeon and **1.35×** on the EPYC (3 rounds under a
varying load; the quietest round 1.33×), so with all four the time target holds only on the Xeon.
`ckpt-all+fused-loss` meets both targets on both machines: 2.71 GiB per sequence at 1.29× (Xeon) and 1.06×
(EPYC, 2 rounds) the unswitched step time. **4 sequences ×
4 frames take 10.62 GiB** (three switches). The 4D U-Net at 2 cm alone: 1.35–1.43 GiB.
**MinkowskiEngine in the same run** (2-vCPU AMD EPYC, ME 0.5.4 built here): the paper step at batch 1
takes 6.61 GiB and 341 s on ME,
6.41 GiB and 206 s on ours unswitched, **2.29 GiB (0.35× ME) and 255 s (0.75× ME's time, 1.24× ours
unswitched)** with all four switches; the 4D U-Net at 2 cm takes 2.94 GiB on ME and **1.43 GiB on ours
switched (0.49× ME)**, in 0.45× ME's time. The paper step with the 4D U-Net at 2 cm (`paper-4d-2cm`): 8.60 →
2.98 GiB per sequence (1.20× the time)."""

MACHINES = {
    "xeon": """On 2026-12-02 (first session), a 2-vCPU Intel(R) Xeon(R) Processor VM (Sapphire Rapids, AMX /
AVX-512 BF16), 24 GiB, torch 2.13 CPU with our native kernels, **one thread per process**
(`OMP_NUM_THREADS=1`). The machine was shared all the time with the downstream grid (2 processes) and a
pre-training study (1 process), so the seconds are several times an idle core's and vary from run to run: the
**memory** figures are exact (the resident-set high-water mark each setting's first step adds, in a fresh
process of its own), the time ratios of the separate runs are rough, and the interleaved run (every setting in
turn in one process) is the fair time comparison. MinkowskiEngine was not built on this VM: the sections
marked *xeon* compare with its recorded figures (`MINKOWSKI_BACKBONE_MIB`, and 12.96 GiB for the paper step at
batch 2 in `pretrain_step_paper_cpu.md`).""",
    "epyc": """Sections marked *epyc*: on 2026-12-02 (second session), a 2-vCPU AMD EPYC VM (no AVX-512),
24 GiB, torch 2.13 CPU with our native kernels, one thread per process, with MinkowskiEngine 0.5.4 (CPU,
OpenBLAS) built on it by `scripts/install_minkowski.sh`: both engines **in the same run**, each setting in a
fresh process of its own on the same batch and initial weights. The machine was shared with a pre-training
study (2 processes), so the seconds are rough; memory is exact.""",
}

SECTIONS = [  # (run name, title, command arguments, formatter[, machine: "xeon" unless named])
    ("paper_b2", "The paper step, batch 2, each switch (time: the one step each setting ran)",
     "--preset paper --batch 2 --engines torch --steps 0 --switches none,recompute,compact,ckpt-all,"
     "fused-loss,recompute+compact+ckpt-all,recompute+compact+ckpt-all+fused-loss", format_report),
    ("paper_b4", "4 sequences × 4 frames in 24 GiB (unswitched: OOM-killed at ~25 GiB before)",
     "--preset paper --batch 4 --engines torch --steps 1 --switches recompute+compact+ckpt-all",
     format_report),
    ("paper_b1_ckpt_fused", "The paper step at batch 1: checkpointing + fused losses, with and without "
     "recomputation (a less loaded moment)", "--preset paper --batch 1 --engines torch --steps 0 --switches "
     "none,ckpt-all+fused-loss,recompute+compact+ckpt-all+fused-loss", format_report),
    ("paper_interleave2", "Step time, interleaved (the fair comparison)", "--preset paper --batch 1 "
     "--interleave 2 --switches none,ckpt-all+fused-loss,recompute+compact+ckpt-all+fused-loss",
     format_interleaved),
    ("paper_interleave3_epyc", "Step time, interleaved, 3 rounds", "--preset paper --batch 1 --interleave 3 "
     "--switches none,recompute+compact+ckpt-all+fused-loss", format_interleaved, "epyc"),
    ("paper_interleave2_ckpt_fused_epyc", "Step time, interleaved: checkpointing + fused losses, 2 rounds",
     "--preset paper --batch 1 --interleave 2 --switches none,ckpt-all+fused-loss", format_interleaved,
     "epyc"),
    ("paper_interleave", "Step time, interleaved: an earlier single round under heavier load (load 4)",
     "--preset paper --batch 1 --interleave 1 --switches none,recompute+compact+ckpt-all+fused-loss",
     format_interleaved),
    ("bb4d2cm", "The 4D U-Net at 2 cm alone (the engine benchmark's MinkUNet14-4D-2cm: 4 frames)",
     "--backbone MinkUNet14-4D-2cm --steps 1 --backbone-switches "
     "none,recompute+compact+ckpt-all-but-dec4,recompute+compact+ckpt-all", format_backbone),
    ("paper4d2cm_b1", "The paper step with the 4D U-Net at 2 cm (`configs/pretrain/paper-4d-2cm.yaml`), "
     "batch 1", "--preset paper-4d-2cm --batch 1 --engines torch --steps 0 --switches "
     "none,recompute+compact+ckpt-all+fused-loss", format_report),
    ("paper_b1_engines", "Both engines in the same run: the paper step, batch 1, every switch on ours",
     "--preset paper --batch 1 --engines torch,minkowski --steps 0 --switches none,recompute,compact,"
     "ckpt-all,fused-loss,recompute+compact+ckpt-all,recompute+compact+ckpt-all+fused-loss", format_report,
     "epyc"),
    ("bb4d2cm_engines", "Both engines in the same run: the 4D U-Net at 2 cm alone",
     "--backbone MinkUNet14-4D-2cm --engines torch,minkowski --steps 1 --backbone-switches "
     "none,recompute+compact+ckpt-all", format_backbone, "epyc"),
]


def main() -> None:
    md = ["# Memory of the paper-size pre-training step: the activation-memory switches (issue 21)", "",
          " ".join(SUMMARY.split()), ""] + [" ".join(text.split()) + "\n" for text in MACHINES.values()]
    committed_path = RESULTS / "pretrain_step_memory_cpu.json"
    committed = json.loads(committed_path.read_text()) if committed_path.is_file() else {}
    results = {}
    for name, title, args, formatter, *machine in SECTIONS:
        path = RUNS / f"{name}.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
        elif name in committed:
            results[name] = committed[name]
        else:
            continue
        where = machine[0] if machine else "xeon"
        md += [f"## {title} ({where})", "", f"`{STEP} {args}`", "", formatter(results[name]), ""]
    (RESULTS / "pretrain_step_memory_cpu.md").write_text("\n".join(md))
    (RESULTS / "pretrain_step_memory_cpu.json").write_text(json.dumps(results, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
