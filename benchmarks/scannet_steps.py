"""Are the ``cpu-scannet`` grid's fine-tuning step counts enough at its scale (and those of the instance,
detection and single-view grids built on its rooms)? A check on the VALIDATION rooms (issue 27; issue 28
below): the grid took its step counts (1000 at the scene levels, 500 at the point levels) from the 100-room
convergence study (``downstream_convergence.py``); 1200 training rooms may need more.

Pre-declared protocol (fixed before any number was seen):

- the grid's own cells (``benchmark.finetune_cell``: the ``cpu-scannet`` preset, its recipe per level, its
  cached 300-s backbones of seed 0 — nothing is pre-trained here) for scratch and 4DContrast, evaluated on
  the 60 **validation** rooms;
- at the grid's primary levels 10 % of the scenes and 20 labelled points per room, each at the grid's step
  count and at twice it (:data:`CHECKS`);
- the rule, per level: the grid's step count is **enough** when doubling it gains less than
  :data:`TOLERANCE` = 1 mIoU point, mean over the two initialisations; otherwise the report says the grid
  under-trains there and by how much. The grid is not re-run either way (its step counts were fixed before
  its test rooms were touched); the check says how far from converged its numbers are, and whether the
  gap differs between scratch and 4DContrast.

**Amended after the first four runs, before any scene-level cell of the grid had run** (the grid had run
its probes and 8 fine-tunings at 20 points, and was stopped then): at 10 % of the scenes doubling 1000
steps gained +19.7 (scratch, 44.1 → 63.8) and +15.0 (4DContrast, 50.6 → 65.6) validation mIoU — far from
converged, and the gap between the two shrank from +6.5 to +1.8, so the grid's scene levels would have
measured how fast each network learns rather than what it reaches. The check therefore goes on to 4000 and
8000 steps at 10 % (:data:`CHECKS`), and a second rule, declared now, **re-picks the scene levels' step
count**: the smallest measured step count whose mean validation mIoU (scratch and 4DContrast) is within
:data:`TOLERANCE` of the best measured one's (:func:`pick_steps`), used at every scene level of the grid
(1, 5, 10 and 20 %; 100 %, the scratch ceiling, keeps at least as many). The 20-point level keeps the first
rule (its rows are already in the grid).

**Instance segmentation, detection and the single views** (``--task instance|detection|views``; issue 28,
declared 2026-12-06 before any of these runs, and before any test cell of the ``cpu-instance`` and
``cpu-detection`` grids): the same cells (those grids' presets, seed 0, scratch and the 300-s 4DContrast
backbone, validation rooms / views), scored by mAP@0.5 (the grids' primary metric), on a doubling ladder
(:data:`LADDERS`: 1000, 2000, 4000, 8000 steps at 10 % of the scenes; the views from their grid's 3000 steps,
at 100 %), run in order and stopped as soon as the rule decides, because a step of these tasks costs 6–9× a
semantic one (whole rooms): **the rule** (:func:`ladder_pick`) takes the first count whose doubling gains less
than :data:`TOLERANCE` mAP@0.5 (mean of scratch and 4DContrast), else the ladder's last, reported as still
rising. The ``cpu-instance`` and ``cpu-detection`` grids then fine-tune for the picked count at every level.
The ``cpu-views`` grid is **not** re-run (its first-stage test cells ran at 3000 steps before this check
existed): its check only says how far from converged its numbers are.

**The 10 % diagnosis of the long backbones** (``--diagnose-long``; issue 27, declared 2026-12-07 after the
grid's test cells at 10 % of the scenes — 4DContrast@3600s − scratch −2.2 [−8.6, +4.3] mIoU — and before
any of its runs): on the validation rooms, seed 0, 10 % of the scenes (:data:`DIAGNOSIS`):
(a) the grid's recipe (LP-FT) for the 3600-s 4DContrast backbone at 1000, 2000, 4000 and 8000 steps (scratch's
rungs are the check's rows above); (b) the paper's recipe (fresh head, one learning rate for every layer) at
the grid's 8000 steps for scratch and the 3600-s 4DContrast backbone. The reading, fixed before the runs
(:func:`diagnosis_verdicts`): (a) the long backbone's lead over scratch at each step count; "**overtaken**"
when it leads by ≥ :data:`TOLERANCE` at 1000 or 2000 steps and by less at 8000 (pre-training buys speed, not
the end point, at this level), "no lead at any step count" when it never leads by ≥ :data:`TOLERANCE`, else
"keeps its lead"; (b) the recipe is named part of the cause when the paper recipe's 4DContrast − scratch at
8000 steps exceeds LP-FT's by ≥ :data:`TOLERANCE`, otherwise not. The grid is not re-run either way.

**The long-budget recipe re-screen** (``--rescreen-long``; issue 27, declared 2026-12-07 at 07:40 UTC, after
the diagnosis above — whose four recipe rows at 8000 steps it reuses: scratch and 4DContrast@3600s under LP-FT
and under the paper's recipe — and before any of its other runs): the first screen
(``benchmarks/downstream_recipes.py``) picked the scene levels' recipe with the 300-s backbones at 500 steps;
the grid then fine-tuned the 3600-s backbones for 8000 steps. This re-screen repeats that screen's arms and
rule where the grid actually runs: validation rooms, seed 0, 10 % of the scenes, 8000 steps, initialisations
scratch, PointContrast@3600s and 4DContrast@3600s (:data:`RESCREEN_INITS`), arms in the first screen's order
of simplicity (:data:`RESCREEN_ARMS`): ``paper`` (fresh head, one lr), ``paper-bb0.1`` (backbone at 0.1× the
head's lr), ``lp-ft`` (the grid's), ``lp-ft-bb0.1``. **The rule** (the first screen's,
:func:`rescreen_pick`): the arm with the highest mean validation mIoU over the three initialisations, except
that an arm within :data:`TOLERANCE` of it which comes earlier in that order wins. **What follows**: if the
rule picks ``lp-ft`` the committed grid stands as it is; otherwise a second test grid at 10 % and 20 % of the
scenes, with the picked recipe and the grid's 8000 steps, for scratch, PointContrast@3600s and
4DContrast@3600s (the primary comparisons' arms), 3 seeds, is reported *beside* the first
(``benchmarks/results/scannet-size-rescreened/``), never replacing it; the 20-point level keeps its recipe
(there fine-tuned ≥ probe holds and the primary comparisons already exclude 0). The 20-point level, other
step counts and other seeds are not screened (cost: 8 new runs, ~1.5 CPU-h).

Runs single-threaded; each finished run is appended to ``steps_check.csv`` (``steps_check_<task>.csv``)
in the task's grid folder (:data:`TASKS`) at once (an interrupted check resumes); writes the ``.md`` beside
it::

    OMP_WAIT_POLICY=PASSIVE nice -n 10 python benchmarks/scannet_steps.py [--task instance]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scannet-size"
TASKS: dict[str, tuple[str, Path, str]] = {
    "segmentation": ("cpu-scannet", OUT, "miou"),
    "instance": ("cpu-instance", ROOT / "benchmarks" / "results" / "instance", "map50"),
    "detection": ("cpu-detection", ROOT / "benchmarks" / "results" / "detection", "map50"),
    "views": ("cpu-views", ROOT / "benchmarks" / "results" / "views", "map50"),
}
"""Task → (its grid's preset, the folder of its check, the metric the rule reads)."""
LADDERS: dict[str, tuple[tuple[str, float], tuple[int, ...]]] = {
    "instance": (("scenes", 0.1), (1000, 2000, 4000, 8000)),
    "detection": (("scenes", 0.1), (1000, 2000, 4000, 8000)),
    "views": (("scenes", 1.0), (3000, 6000, 12000)),
}
"""Task → (level, step counts in the order they run): the doubling ladders of the map tasks."""
CHECKS: dict[tuple[str, float], tuple[int, ...]] = {("scenes", 0.1): (1000, 2000, 4000, 8000),
                                                    ("points", 20): (500, 1000)}
"""Level → step counts run (the grid's, then twice it; at 10 % of the scenes also 4000 and 8000, the
amendment in the module docstring)."""
INITS: tuple[str, ...] = ("scratch", "4dcontrast")
LONG: str = "4dcontrast@3600s"
"""The long-budget backbone of the 10 % diagnosis."""
PAPER_RECIPE: tuple[str, ...] = ("optim.recipe=paper",)
DIAGNOSIS: tuple[tuple[str, str, int, tuple[str, ...] | None], ...] = (
    *((f"steps={n}", LONG, n, None) for n in (1000, 2000, 4000, 8000)),
    ("recipe=paper,steps=8000", LONG, 8000, PAPER_RECIPE),
    ("recipe=paper,steps=8000", "scratch", 8000, PAPER_RECIPE))
"""The 10 % diagnosis, in the order it runs: (variant, backbone label, steps, the level's recipe overrides —
None: the grid's own)."""
RESCREEN_INITS: tuple[str, ...] = ("scratch", "pointcontrast@3600s", LONG)
RESCREEN_ARMS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "paper": ("recipe=paper,steps=8000", PAPER_RECIPE),
    "paper-bb0.1": ("recipe=paper-bb0.1,steps=8000", ("optim.recipe=paper", "optim.backbone_lr_scale=0.1")),
    "lp-ft": ("steps=8000", None),
    "lp-ft-bb0.1": ("recipe=lp-ft-bb0.1,steps=8000", ("optim.recipe=lp-ft", "optim.backbone_lr_scale=0.1")),
}
"""The re-screen's arms in the rule's order of simplicity: arm → (the check's variant, the 10 % level's recipe
overrides — None: the grid's own, LP-FT). ``paper`` and ``lp-ft`` share their variants with the diagnosis, so
its rows count here."""
RESCREEN_ORDER: tuple[tuple[str, str], ...] = (
    ("paper", "pointcontrast@3600s"), ("lp-ft", "pointcontrast@3600s"),
    *((arm, init) for arm in ("paper-bb0.1", "lp-ft-bb0.1") for init in (LONG, "pointcontrast@3600s",
                                                                          "scratch")))
"""The order the re-screen's new runs take (the two main arms completed first)."""
SEED: int = 0
TOLERANCE: float = 1.0
"""mIoU points, or mAP@0.5 points for the map tasks (the rules in the module docstring)."""


def csv_path(task: str, out: Path | None = None) -> Path:
    """Where the check of ``task`` keeps its rows."""
    folder = TASKS[task][1] if out is None else out
    return folder / ("steps_check.csv" if task == "segmentation" else f"steps_check_{task}.csv")


Cell = tuple[str, str, str, float, int, tuple[str, ...] | None]
"""One run of a check: (variant, backbone label, protocol, level, fine-tuning steps, the level's recipe
overrides — None: the grid's own)."""


def _run_cells(task: str, out: Path, cache: Path, cells: list[Cell],
               decided: Callable[[list[dict]], bool] | None = None) -> list[dict]:
    """Run the ``cells`` of a check in order on the validation split, single-threaded, each finished run
    appended to the task's CSV at once; a cell already in the CSV is skipped (an interrupted check resumes);
    nothing more runs once ``decided(rows)`` is true."""
    import torch

    from fourdcontrast.downstream import benchmark as bm

    torch.set_num_threads(1)
    preset = bm.PRESETS[TASKS[task][0]]
    metric = TASKS[task][2]
    datasets = bm.load_rooms(preset, "val")
    fields = ("variant",) + bm.csv_fields(datasets[1].class_names, preset.task)
    path = csv_path(task, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = bm.read_rows(path)
    done = {(r["variant"], r["method"], r["protocol"], f"{float(r['level']):g}") for r in rows}
    for variant, label, protocol, level, n, overrides in cells:
        if (variant, label, protocol, f"{level:g}") in done:
            continue
        if decided is not None and decided(rows):
            break
        p = replace(preset, finetune_steps_at=((protocol, level, n),))
        if overrides is not None:
            p = replace(p, finetune_overrides_at=((protocol, level, overrides),))
        backbone = bm.cached_backbone(label, SEED, preset, cache)
        row = bm.finetune_cell(backbone, protocol, level, SEED, p, "val", datasets)
        rows.append({**row, "variant": variant})
        bm._write_rows(path, rows, fields)
        logging.info("%s %s %s=%s: validation %s %.1f (%.0f CPU-s)", variant, label, protocol, level,
                     metric, 100 * float(row[metric]), float(row["cpu_seconds"]))
    return rows


def run(out: Path, cache: Path, task: str = "segmentation") -> list[dict]:
    """The step check of ``task`` (:data:`CHECKS`, or the task's ladder of :data:`LADDERS`, which stops as
    soon as :func:`ladder_pick` decides)."""
    checks = CHECKS if task == "segmentation" else dict([LADDERS[task]])
    cells = [(f"steps={n}", init, protocol, level, n, None)
             for (protocol, level), steps in checks.items() for n in steps for init in INITS]
    decided = None if task == "segmentation" else (lambda rows: ladder_pick(rows, task) is not None)
    return _run_cells(task, out, cache, cells, decided)


def run_diagnosis(out: Path, cache: Path) -> list[dict]:
    """The 10 % diagnosis (:data:`DIAGNOSIS`): its rows join the check's CSV (resumable per run)."""
    cells = [(variant, label, "scenes", 0.1, n, overrides) for variant, label, n, overrides in DIAGNOSIS]
    return _run_cells("segmentation", out, cache, cells)


def run_rescreen(out: Path, cache: Path) -> list[dict]:
    """The long-budget recipe re-screen (module docstring): its runs not yet in the check's CSV, in
    :data:`RESCREEN_ORDER` (the diagnosis' rows of ``paper`` and ``lp-ft`` count; resumable per run)."""
    cells = [(RESCREEN_ARMS[arm][0], init, "scenes", 0.1, 8000, RESCREEN_ARMS[arm][1])
             for arm, init in RESCREEN_ORDER]
    return _run_cells("segmentation", out, cache, cells)


def _rescreen_scores(rows: list[dict]) -> dict[str, tuple[list[float | None], float | None]]:
    """Each re-screen arm's validation mIoU per :data:`RESCREEN_INITS` (None: not run) and their mean (None
    until all have run)."""
    scores = {}
    for arm, (variant, _) in RESCREEN_ARMS.items():
        got = [_val(rows, variant, init) for init in RESCREEN_INITS]
        scores[arm] = got, None if None in got else sum(got) / len(got)
    return scores


def rescreen_pick(rows: list[dict]) -> tuple[str, dict[str, float]] | None:
    """The re-screen's rule: (the picked arm, each arm's mean validation mIoU over :data:`RESCREEN_INITS`);
    None until every arm × initialisation has run."""
    means = {arm: mean for arm, (_, mean) in _rescreen_scores(rows).items()}
    if None in means.values():
        return None
    best = max(means.values())
    return next(arm for arm, v in means.items() if v >= best - TOLERANCE), means


def rescreen_section(rows: list[dict]) -> list[str]:
    """The re-screen's table (validation mIoU of each arm × initialisation) and the rule's verdict."""
    lines = ["| arm | " + " | ".join(RESCREEN_INITS) + " | mean |", "|---" * (len(RESCREEN_INITS) + 2) + "|"]
    for arm, (got, mean) in _rescreen_scores(rows).items():
        cells = ("–" if v is None else f"{v:.1f}" for v in (*got, mean))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    picked = rescreen_pick(rows)
    if picked is None:
        verdict = "- the re-screen's runs are not all done yet."
    elif picked[0] == "lp-ft":
        verdict = "- the rule picks **lp-ft**, the grid's recipe: the committed grid stands."
    else:
        verdict = (f"- the rule picks **{picked[0]}** (the grid used lp-ft): a second test grid at 10 % and "
                   "20 % of the scenes with it is reported beside the first "
                   "(`benchmarks/results/scannet-size-rescreened/`).")
    return [*lines, "", verdict]


def _val(rows: list[dict], variant: str, label: str) -> float | None:
    got = [100 * float(r["miou"]) for r in rows if r["variant"] == variant and r["method"] == label
           and r["protocol"] == "scenes" and float(r["level"]) == 0.1]
    return got[-1] if got else None


def diagnosis_verdicts(rows: list[dict]) -> tuple[list[str], list[str]]:
    """The diagnosis' table lines and its verdicts by the rules of the module docstring (a verdict only
    once the runs it reads are in)."""
    lines = ["| steps | recipe | scratch | 4DContrast@3600s | 4DContrast@3600s − scratch |",
             "|---|---|---|---|---|"]
    lead: dict[int, float] = {}
    for n in (1000, 2000, 4000, 8000):
        a, b = _val(rows, f"steps={n}", "scratch"), _val(rows, f"steps={n}", LONG)
        if a is not None and b is not None:
            lead[n] = b - a
        lines.append(f"| {n} | LP-FT (the grid's) | {'–' if a is None else f'{a:.1f}'} | "
                     f"{'–' if b is None else f'{b:.1f}'} | {f'{lead[n]:+.1f}' if n in lead else '–'} |")
    pa, pb = _val(rows, "recipe=paper,steps=8000", "scratch"), _val(rows, "recipe=paper,steps=8000", LONG)
    paper = None if pa is None or pb is None else pb - pa
    lines.append(f"| 8000 | paper (fresh head, one lr) | {'–' if pa is None else f'{pa:.1f}'} | "
                 f"{'–' if pb is None else f'{pb:.1f}'} | {'–' if paper is None else f'{paper:+.1f}'} |")
    verdicts = []
    if len(lead) == 4:
        early = max(lead[1000], lead[2000])
        if early >= TOLERANCE and lead[8000] < TOLERANCE:
            word = "**overtaken**: it leads early and scratch catches up by 8000 steps"
        elif max(lead.values()) < TOLERANCE:
            word = "**no lead at any step count**"
        else:
            word = "**keeps its lead**"
        verdicts.append("- (a) the 3600-s 4DContrast backbone at 10 % of the scenes, LP-FT: "
                        + ", ".join(f"{lead[n]:+.1f} at {n}" for n in sorted(lead)) + f" steps — {word}.")
    else:
        verdicts.append("- (a) the step-ladder runs are not all done yet.")
    if paper is not None and 8000 in lead:
        named = paper - lead[8000] >= TOLERANCE
        verdicts.append(f"- (b) at 8000 steps 4DContrast@3600s − scratch is {paper:+.1f} with the paper's "
                        f"recipe vs {lead[8000]:+.1f} with LP-FT: the recipe is "
                        + ("**named part of the cause**." if named else "**not** the cause."))
    else:
        verdicts.append("- (b) the recipe runs are not all done yet.")
    return lines, verdicts


def mean_miou(rows: list[dict], protocol: str, level: float, steps: int,
              metric: str = "miou") -> float | None:
    """Mean validation score (points; mIoU unless ``metric`` names another column) of the initialisations at
    one step count; None until all have run."""
    got = [100 * float(r[metric]) for r in rows if r["variant"] == f"steps={steps}" and
           r["protocol"] == protocol and float(r["level"]) == level and r["method"] in INITS]
    return sum(got) / len(got) if len(got) == len(INITS) else None


def ladder_pick(rows: list[dict], task: str) -> tuple[int, bool] | None:
    """The ladder rule of a map task: (the first count of :data:`LADDERS` whose doubling gains less than
    :data:`TOLERANCE` points of the mean, True), or (the ladder's last count, False) when every doubling
    gained more (still rising); None while the runs that decide are missing."""
    (protocol, level), steps = LADDERS[task]
    metric = TASKS[task][2]
    for n, twice in zip(steps[:-1], steps[1:], strict=True):
        a, b = (mean_miou(rows, protocol, level, k, metric) for k in (n, twice))
        if a is None or b is None:
            return None
        if b - a < TOLERANCE:
            return n, True
    return steps[-1], False


def pick_steps(rows: list[dict], protocol: str = "scenes", level: float = 0.1) -> int | None:
    """The amended rule: the smallest step count of :data:`CHECKS` at the level whose mean validation mIoU is
    within :data:`TOLERANCE` of the best one's; None until every count has run."""
    means = {n: mean_miou(rows, protocol, level, n) for n in CHECKS[(protocol, level)]}
    if any(v is None for v in means.values()):
        return None
    best = max(means.values())
    return min(n for n, v in means.items() if v >= best - TOLERANCE)


def report(rows: list[dict]) -> str:
    from fourdcontrast.downstream.benchmark import machine_description

    lines = ["# Fine-tuning step counts at the cpu-scannet scale (validation rooms)", "",
             "Generated by `python benchmarks/scannet_steps.py` (protocol, rules and the amendment in its "
             "docstring): the grid's cells for scratch and 4DContrast (300-s backbone), seed 0, at several "
             f"step counts; mIoU (%) on the 60 validation rooms. Machine: {machine_description()}.", "",
             "| level | steps | scratch | 4DContrast | mean | 4DContrast − scratch | CPU-s (scratch / 4D) |",
             "|---|---|---|---|---|---|---|"]
    verdicts = []
    for (protocol, level), steps in CHECKS.items():
        for n in steps:
            got = {r["method"]: r for r in rows if r["variant"] == f"steps={n}" and r["protocol"] == protocol
                   and float(r["level"]) == level}
            vals = [100 * float(got[i]["miou"]) if i in got else None for i in INITS]
            cells = [f"{v:.1f}" if v is not None else "–" for v in vals]
            both = None not in vals
            cpu = " / ".join(f"{float(got[i]['cpu_seconds']):.0f}" if i in got else "–" for i in INITS)
            lines.append(f"| {protocol} {level:g} | {n} | {cells[0]} | {cells[1]} | "
                         f"{f'{sum(vals) / 2:.1f}' if both else '–'} | "
                         f"{f'{vals[1] - vals[0]:+.1f}' if both else '–'} | {cpu} |")
        a, b = mean_miou(rows, protocol, level, steps[0]), mean_miou(rows, protocol, level, steps[1])
        if a is not None and b is not None:
            verdicts.append(f"- {protocol} {level:g}: doubling the grid's {steps[0]} steps gains "
                            f"{b - a:+.1f} mIoU (mean of scratch and 4DContrast): the grid's step count is "
                            + ("**enough** by the first rule." if b - a < TOLERANCE else
                               f"**short** by the first rule (gain ≥ {TOLERANCE:g})."))
    picked = pick_steps(rows)
    verdicts.append(f"- the amended rule picks **{picked} steps** for the grid's scene levels." if picked else
                    "- the amended rule's runs are not all done yet.")
    text = "\n".join(lines + ["", "## Verdict", "", *verdicts]) + "\n"
    if any(r["method"] == LONG or r["variant"].startswith("recipe=") for r in rows):
        table, found = diagnosis_verdicts(rows)
        text += "\n".join(["", "## The 10 % diagnosis of the long backbone", "",
                           "Declared in the script's docstring before its runs (validation rooms, seed 0, "
                           "10 % of the scenes; the grid is not re-run).", "", *table, "", *found]) + "\n"
    if any(r["method"] == "pointcontrast@3600s" or "bb0.1" in r["variant"] for r in rows):
        text += "\n".join(["", "## The long-budget recipe re-screen", "",
                           "Declared in the script's docstring before its new runs (validation rooms, "
                           "seed 0, 10 % of the scenes, 8000 steps; mIoU %).", "",
                           *rescreen_section(rows)]) + "\n"
    return text


def ladder_report(rows: list[dict], task: str) -> str:
    """The markdown of a map task's check: the ladder's scores and the rule's verdict."""
    from fourdcontrast.downstream.benchmark import machine_description

    (protocol, level), steps = LADDERS[task]
    preset, _, metric = TASKS[task]
    split = "views" if task == "views" else "rooms"
    lines = [f"# Fine-tuning step counts of the {preset} grid (validation {split})", "",
             f"Generated by `python benchmarks/scannet_steps.py --task {task}` (protocol and the ladder "
             "rule in its docstring): the grid's cells for scratch and 4DContrast (300-s backbone), seed 0, "
             f"at {protocol} {level:g}, on a doubling ladder stopped when the rule decides; mAP (%) on the "
             f"validation split. Machine: {machine_description()}.", "",
             "| steps | scratch @0.5 | 4DContrast @0.5 | mean @0.5 | 4DContrast − scratch | scratch @0.25 | "
             "4DContrast @0.25 | CPU-s (scratch / 4D) |", "|---|---|---|---|---|---|---|---|"]
    for n in steps:
        got = {r["method"]: r for r in rows if r["variant"] == f"steps={n}" and r["protocol"] == protocol
               and float(r["level"]) == level}
        if not got:
            continue
        v = [100 * float(got[i][metric]) if i in got else None for i in INITS]
        q = [f"{100 * float(got[i]['map25']):.1f}" if i in got else "–" for i in INITS]
        both = None not in v
        cpu = " / ".join(f"{float(got[i]['cpu_seconds']):.0f}" if i in got else "–" for i in INITS)
        cells = [f"{x:.1f}" if x is not None else "–" for x in v]
        lines.append(f"| {n} | {cells[0]} | {cells[1]} | {f'{sum(v) / 2:.1f}' if both else '–'} | "
                     f"{f'{v[1] - v[0]:+.1f}' if both else '–'} | {q[0]} | {q[1]} | {cpu} |")
    picked = ladder_pick(rows, task)
    if picked is None:
        verdict = "the runs that decide are not all done yet."
    elif picked[1]:
        verdict = f"the rule picks **{picked[0]} steps** (doubling gains less than {TOLERANCE:g} mAP@0.5)."
    else:
        verdict = (f"**still rising at {picked[0]} steps**, the ladder's last (every doubling gained "
                   f"{TOLERANCE:g} mAP@0.5 or more): the rule takes {picked[0]}.")
    if task == "views":
        verdict += " The cpu-views grid is not re-run (its test cells ran at 3000 steps before this check)."
    return "\n".join(lines + ["", "## Verdict", "", f"- {verdict}"]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), default="segmentation")
    p.add_argument("--out", type=Path, default=None, help="default: the task's grid folder (TASKS)")
    p.add_argument("--cache", type=Path, default=ROOT / "outputs" / "downstream")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--diagnose-long", action="store_true",
                   help="run the 10 %% diagnosis of the long backbone (segmentation only; DIAGNOSIS)")
    p.add_argument("--rescreen-long", action="store_true",
                   help="run the long-budget recipe re-screen (segmentation only; RESCREEN_ARMS)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads spin
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from fourdcontrast.downstream.benchmark import read_rows
    from fourdcontrast.io.atomic import atomic_write_bytes

    path = csv_path(args.task, args.out)
    if (args.diagnose_long or args.rescreen_long) and args.task != "segmentation":
        p.error("--diagnose-long and --rescreen-long check the segmentation grid (--task segmentation)")
    if args.report_only:
        rows = read_rows(path)
    elif args.diagnose_long:
        rows = run_diagnosis(path.parent, args.cache)
    elif args.rescreen_long:
        rows = run_rescreen(path.parent, args.cache)
    else:
        rows = run(path.parent, args.cache, args.task)
    text = report(rows) if args.task == "segmentation" else ladder_report(rows, args.task)
    atomic_write_bytes(path.with_suffix(".md"), text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
