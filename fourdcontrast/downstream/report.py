"""The downstream benchmark's report, rebuilt from its CSV: the pre-declared primary comparisons with
paired 95 % intervals, Holm-corrected tests of every other cell, sanity checks, Table-2-style tables
(mIoU and mIoU without wall and floor, per-class IoU), the cost table and Figure-4-style plots.

The primary comparisons (:data:`PRIMARY_COMPARISONS`) are fixed here, in code, before the grid runs; the
markdown states them before any number.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fourdcontrast.downstream.methods import METHODS
from fourdcontrast.downstream.stats import PairedInterval, holm, paired_t_interval
from fourdcontrast.io.atomic import atomic_path, atomic_write_bytes

__all__ = [
    "MAP_METRICS",
    "METRICS",
    "PRIMARY_COMPARISONS",
    "budget_curve",
    "budget_curve_lines",
    "primary_comparisons",
    "Comparison",
    "SanityCheck",
    "compare",
    "map_markdown_report",
    "map_sanity_checks",
    "markdown_report",
    "other_comparisons",
    "plot_budget_curve",
    "plot_figure4",
    "primary_sentence",
    "read_results",
    "sanity_checks",
    "summarise",
    "write_report",
]

METRICS: dict[str, str] = {"miou": "mIoU", "miou_objects": "mIoU without wall and floor"}
"""CSV metric columns reported (``miou`` is the primary metric)."""
MAP_METRICS: dict[str, str] = {"map50": "mAP@0.5", "map25": "mAP@0.25",
                               "cluster_boxes_map50": "box mAP@0.5 of the instance clusters (baseline)",
                               "cluster_boxes_map25": "box mAP@0.25 of the instance clusters (baseline)"}
"""The instance and detection grids' metric columns (``map50`` is the primary metric)."""
TASK_TITLES: dict[str, str] = {
    "instance": "instance segmentation (PointGroup-style, mask mAP)",
    "detection": "3D object detection (VoteNet-style, box mAP)"}
PAPER_MAP: dict[tuple[str, str, float], str] = {
    ("detection", "scratch", 0.10): "the paper reports 4DContrast ahead of scratch at 10 % of ScanNet's "
                                    "scenes (20.0 vs 15.5 mAP@0.5, +4.5, Table 7)",
    ("detection", "scratch", 0.20): "the paper reports 4DContrast ahead of scratch at 20 % of ScanNet's "
                                    "scenes (29.5 vs 23.6 mAP@0.5, +5.9, Table 7)",
    ("detection", "pointcontrast", 0.10): "the paper compares detection with PointContrast only on all of "
                                          "ScanNet (39.3 vs 38.0 mAP@0.5, +1.3, Table 4)",
    ("instance", "scratch", 0.10): "the paper reports instance segmentation on all of ScanNet only (57.6 vs "
                                   "53.4 mAP@0.5, +4.2, Table 3)",
    ("instance", "pointcontrast", 0.10): "the paper reports instance segmentation on all of ScanNet only "
                                         "(57.6 vs 55.8 mAP@0.5 for PointContrast, +1.8, Table 3)",
    ("detection@embedded-views", "scratch", 1.0): "the paper reports 4DContrast ahead of scratch on SUN "
                                                  "RGB-D's single views (34.3 vs 32.9 mAP@0.5, +1.4, "
                                                  "Table 5)",
    ("detection@embedded-views", "pointcontrast", 1.0): "the paper reports 4DContrast ahead of PointContrast "
                                                        "on SUN RGB-D (34.3 vs 34.0 mAP@0.5, +0.3, Table 5)",
}
"""What the paper says about each primary comparison of the instance and detection grids (keyed by task —
``<task>@<dataset>`` for a dataset other than the rooms — baseline and level; 20 % falls back to 10 %'s
text where the paper has no separate number)."""
DATASET_TITLES: dict[str, tuple[str, str]] = {
    "embedded": ("the embedded rooms", "rooms"),
    "embedded-views": ("single-view partial scans of the embedded rooms (the SUN RGB-D stand-in, Table 5)",
                       "views")}
"""The report's title and unit noun of each benchmark dataset."""

MODE_NAMES = {"finetune": "fine-tuned", "linear": "linear probe"}


@dataclass(frozen=True)
class Comparison:
    """``a − b`` in one cell: mode (``finetune`` / ``linear``), protocol (``scenes`` / ``points``), level."""

    a: str
    b: str
    mode: str
    protocol: str
    level: float

    def name(self) -> str:
        return f"{self.a} − {self.b}, {MODE_NAMES[self.mode]}, {level_name(self.protocol, self.level)}"


PRIMARY_COMPARISONS: tuple[Comparison, ...] = tuple(
    Comparison("4dcontrast", b, mode, protocol, level)
    for b in ("scratch", "pointcontrast") for mode in ("finetune", "linear")
    for protocol, level in (("scenes", 0.01), ("points", 20)))
"""Pre-declared (issue 19): 4DContrast − scratch and 4DContrast − PointContrast, fine-tuned and probed, at
1 % of the training scenes and at 20 labelled points per scene; metric mIoU on the test rooms; paired by
seed; 95 % t intervals with n − 1 degrees of freedom, no multiplicity correction."""

PAPER = {
    ("scratch", "scenes"): "the paper reports 4DContrast ahead of scratch at 1 % of ScanNet's scenes "
                           "(29.3 vs 27.9 mIoU, +1.4, Table 6)",
    ("scratch", "points"): "the paper does not report limited annotations for 4DContrast; it claims gains "
                           "under limited data in general (Sec. 5.1, Fig. 4)",
    ("pointcontrast", "scenes"): "the paper compares with PointContrast only on all of ScanNet (72.0 vs "
                                 "71.3 mIoU, +0.7, Table 2), not under limited data",
    ("pointcontrast", "points"): "the paper compares with PointContrast only on all of ScanNet (72.0 vs "
                                 "71.3 mIoU, +0.7, Table 2), not under limited data",
}
"""What the paper says about each primary comparison (fine-tuning; it reports no linear probes)."""
PAPER.update({
    ("scratch", "scenes", 0.10): "the paper reports 4DContrast ahead of scratch at 10 % of ScanNet's scenes "
                                 "(57.9 vs 49.3 mIoU, +8.6, Table 6)",
    ("scratch", "scenes", 0.20): "the paper reports 4DContrast ahead of scratch at 20 % of ScanNet's scenes "
                                 "(61.9 vs 54.6 mIoU, +7.3, Table 6)",
})


def primary_comparisons(spec: dict | None) -> tuple[Comparison, ...]:
    """The grid's pre-declared primary comparisons: its preset's ``primary`` (``(a, b, mode, protocol,
    level)`` tuples, written into the grid spec before the grid ran), else :data:`PRIMARY_COMPARISONS`."""
    declared = (spec or {}).get("preset", {}).get("primary") or ()
    return tuple(Comparison(a, b, mode, protocol, float(level)) for a, b, mode, protocol, level in declared) \
        or PRIMARY_COMPARISONS


def _base(label: str) -> str:
    return label.partition("@")[0]


def level_name(protocol: str, level: float) -> str:
    """``"1 % of scenes"`` or ``"20 points per scene"``."""
    if protocol == "scenes":
        return f"{100 * float(level):g} % of scenes"
    return f"{float(level):g} points per scene"


def short_level(protocol: str, level: float) -> str:
    return f"{100 * float(level):g} %" if protocol == "scenes" else f"{float(level):g} pts"


# --- reading ----------------------------------------------------------------------------------------
def read_results(path: str | os.PathLike) -> list[dict]:
    """The test rows of a benchmark CSV. A CSV of the earlier format (no ``split`` column: one pre-training
    per method, 40 fine-tuning steps) is read as test rows too, with ``format`` = 1 on every row (its
    seeds do not replicate pre-training, so :func:`compare` is not meaningful on it)."""
    import csv

    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "split" not in rows[0]:
        return [{**r, "split": "test", "format": 1} for r in rows]
    return [{**r, "format": 2} for r in rows if r["split"] == "test"]


def cell_values(rows: list[dict], metric: str = "miou") -> dict:
    """``{(mode, protocol, level, method): {seed: value in percent}}`` (rows lacking the metric skipped)."""
    out: dict = {}
    for r in rows:
        if r.get(metric) in (None, ""):
            continue
        key = (r["mode"], r["protocol"], float(r["level"]), r["method"])
        out.setdefault(key, {})[int(r["seed"])] = 100 * float(r[metric])
    return out


def _mean_std(values) -> tuple[float, float, int]:
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan, 0
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else math.nan), int(a.size)


def compare(values: dict, c: Comparison) -> PairedInterval:
    """The paired 95 % t interval of ``c.a − c.b`` over the seeds both have (``values`` from
    :func:`cell_values`)."""
    a = values.get((c.mode, c.protocol, float(c.level), c.a), {})
    b = values.get((c.mode, c.protocol, float(c.level), c.b), {})
    return paired_t_interval([a[s] - b[s] for s in sorted(set(a) & set(b))])


def summarise(rows: list[dict], metric: str = "miou") -> dict:
    """``{(mode, protocol, level, method): {"mean", "std", "n", "delta", "delta_std", "delta_n", "low",
    "high"}}`` in points: mean ± std over seeds and the difference to scratch paired by seed with its 95 %
    t interval (``low``, ``high``)."""
    values = cell_values(rows, metric)
    out = {}
    for (mode, protocol, level, method), seeds in values.items():
        mean, std, n = _mean_std(seeds.values())
        entry = {"mean": mean, "std": std, "n": n, "delta": math.nan, "delta_std": math.nan, "delta_n": 0,
                 "low": math.nan, "high": math.nan}
        if method != "scratch":
            d = compare(values, Comparison(method, "scratch", mode, protocol, level))
            entry.update(delta=d.mean, delta_std=d.std, delta_n=d.n, low=d.low, high=d.high)
        out[(mode, protocol, level, method)] = entry
    return out


# --- comparisons ----------------------------------------------------------------------------------
def primary_sentence(c: Comparison, d: PairedInterval, metric: str = "mIoU", paper: str | None = None) -> str:
    """One plain sentence: which way ``c`` went and whether that agrees with the paper (``paper``: what the
    paper says about it; default: :data:`PAPER`'s text for semantic segmentation)."""
    if d.n == 0:
        return f"{c.name()}: no paired runs in this grid (yet)."
    head = f"{c.name()}: {d.mean:+.1f} {metric} points"
    if d.n < 2:
        return head + f" from {d.n} seed(s): too few seeds for an interval, so no conclusion."
    head += f" [95 % CI {d.low:+.1f}, {d.high:+.1f}; n = {d.n} seeds]"
    if paper is None:
        paper = PAPER.get((_base(c.b), c.protocol, float(c.level)), PAPER[(_base(c.b), c.protocol)])
    if c.mode == "linear":
        paper = "the paper reports fine-tuning only, but its claim of better features implies a gain here"
    if d.low > 0:
        verdict = f"4DContrast is ahead (the interval excludes 0), which agrees with the paper ({paper})"
    elif d.high < 0:
        verdict = f"4DContrast is behind (the interval excludes 0), which contradicts the paper ({paper})"
    else:
        verdict = (f"no difference could be detected (the interval includes 0), so this neither confirms "
                   f"nor refutes the paper ({paper})")
    return f"{head} — {verdict}."


def other_comparisons(rows: list[dict], metric: str = "miou",
                      primary: tuple[Comparison, ...] = PRIMARY_COMPARISONS) -> list[dict]:
    """Every non-primary cell: each method − scratch, and 4DContrast − PointContrast (at each pre-training
    budget), per mode and level, with the paired t test's p-value and Holm's adjustment over these cells
    together."""
    values = cell_values(rows, metric)
    cells = sorted({(mode, p, lv) for mode, p, lv, _ in values}, key=lambda k: (k[0], k[1] != "scenes", k[2]))
    methods = sorted({m for *_, m in values})
    comps = [Comparison(m, "scratch", mode, p, lv) for mode, p, lv in cells for m in methods
             if m != "scratch"]
    budgets = sorted({m.partition("@")[2] for m in methods if m.startswith("4dcontrast")
                      and m.replace("4dcontrast", "pointcontrast", 1) in methods})
    comps += [Comparison("4dcontrast" + (f"@{b}" if b else ""), "pointcontrast" + (f"@{b}" if b else ""),
                         mode, p, lv) for b in budgets for mode, p, lv in cells]
    comps = [c for c in comps if c not in primary]
    results = [(c, compare(values, c)) for c in comps]
    results = [(c, d) for c, d in results if d.n >= 2]
    adjusted = holm([d.p for _, d in results])
    return [{"comparison": c, "interval": d, "p_holm": float(p)} for (c, d), p in
            zip(results, adjusted, strict=True)]


def budget_curve(rows: list[dict], default_budget_s: float | None, metric: str = "miou") -> dict:
    """``{(mode, protocol, level, method): [(budget_s, PairedInterval of label − scratch)]}`` for every
    method with rows at more than one pre-training budget (a label without ``@`` has the grid's
    ``default_budget_s``), budgets ascending."""
    values = cell_values(rows, metric)
    out: dict = {}
    for mode, protocol, level, label in values:
        method, _, b = label.partition("@")
        if method == "scratch":
            continue
        budget = float(b[:-1]) if b else default_budget_s
        d = compare(values, Comparison(label, "scratch", mode, protocol, level))
        if budget is not None and d.n:
            out.setdefault((mode, protocol, level, method), []).append((budget, d))
    return {k: sorted(v, key=lambda e: e[0]) for k, v in sorted(out.items(), key=str) if len(v) > 1}


def budget_curve_lines(rows: list[dict], spec: dict | None) -> list[str]:
    """The markdown section "gain over scratch against the pre-training budget" (empty when the grid has
    one budget)."""
    default = (spec or {}).get("preset", {}).get("pretrain_budget_s")
    curve = budget_curve(rows, default)
    if not curve:
        return []
    budgets = sorted({b for v in curve.values() for b, _ in v})
    lines = ["## Gain over scratch against the pre-training budget", "",
             "Δ mIoU (method − scratch, paired by seed) [95 % t interval] at each pre-training budget (CPU "
             "seconds of the pre-training process): how far must pre-training go before fine-tuning keeps "
             "its benefit?", "",
             "| mode | level | method | " + " | ".join(f"{b:g} s" for b in budgets) + " |",
             "|---|---|---|" + "---|" * len(budgets)]
    for (mode, protocol, level, method), entries in curve.items():
        by = dict(entries)
        cells = [(f"{by[b].mean:+.1f} [{by[b].low:+.1f}, {by[b].high:+.1f}] (n={by[b].n})" if by[b].n > 1
                  else f"{by[b].mean:+.1f} (n=1)") if b in by else "–" for b in budgets]
        lines.append(f"| {MODE_NAMES[mode]} | {short_level(protocol, level)} | {method} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


# --- sanity checks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SanityCheck:
    name: str
    passed: bool | None
    detail: str


def sanity_checks(rows: list[dict], metric: str = "miou") -> list[SanityCheck]:
    """Fine-tuning ≥ linear probe (every method and level with both), more data ≥ less data for scratch
    (fine-tuned, each protocol), and the full-data ceiling (scratch fine-tuned on 100 % of the scenes).
    Compared on means over seeds; ``passed`` is None where the cells are missing."""
    s = summarise(rows, metric)
    checks = []
    pairs = [(k, s[("linear", *k[1:])]) for k in s if k[0] == "finetune" and ("linear", *k[1:]) in s]
    fails = [f"{k[3]} at {short_level(k[1], k[2])}: {s[k]['mean']:.1f} < {lin['mean']:.1f}"
             for k, lin in pairs if s[k]["mean"] < lin["mean"]]
    checks.append(SanityCheck(
        "fine-tuning ≥ linear probe", None if not pairs else not fails,
        f"holds in {len(pairs) - len(fails)} of {len(pairs)} method × level cells" + (
            "; below the probe: " + "; ".join(fails) if fails else "")))
    ceiling = s.get(("finetune", "scenes", 1.0, "scratch"))
    for protocol in ("scenes", "points"):
        pts = sorted((k[2], e["mean"]) for k, e in s.items()
                     if k[0] == "finetune" and k[1] == protocol and k[3] == "scratch")
        if protocol == "points" and pts and ceiling is not None:
            pts.append((math.inf, ceiling["mean"]))  # every point labelled: 100 % of the scenes

        def name(lv, protocol=protocol):
            return "all points" if math.isinf(lv) else short_level(protocol, lv)

        drops = [f"{name(a)} {ma:.1f} → {name(b)} {mb:.1f}"
                 for (a, ma), (b, mb) in zip(pts, pts[1:], strict=False) if mb < ma]
        checks.append(SanityCheck(
            f"scratch fine-tuned: more {'scenes' if protocol == 'scenes' else 'labelled points'} ≥ fewer",
            None if len(pts) < 2 else not drops,
            " → ".join(f"{name(lv)} {m:.1f}" for lv, m in pts) + (
                "; drops: " + "; ".join(drops) if drops else "")))
    checks.append(SanityCheck(
        "full-data ceiling reported", True if ceiling is not None else None,
        "scratch fine-tuned on 100 % of the scenes: " + (
            _mean_sd(ceiling) if ceiling else "not run")))
    return checks


# --- markdown -------------------------------------------------------------------------------------
def sanity_lines(checks: list[SanityCheck]) -> list[str]:
    """The markdown section "Sanity checks": one line per check, holds / **fails** / not measured."""
    marks = {True: "holds", False: "**fails**", None: "not measured"}
    return ["## Sanity checks", "", *(f"- {c.name}: {marks[c.passed]} — {c.detail}" for c in checks), ""]


def holm_lines(others: list[dict], metric_name: str) -> list[str]:
    """The markdown section "Other cells, Holm-corrected" of :func:`other_comparisons`' results (empty when
    there are none)."""
    if not others:
        return []
    sig = [o for o in others if o["p_holm"] <= 0.05]
    lines = ["## Other cells, Holm-corrected", "",
             f"{len(sig)} of {len(others)} cells differ at α = 0.05 after Holm's correction.", "",
             f"| comparison | Δ {metric_name} [95 % CI] | p | p (Holm) |", "|---|---|---|---|"]
    for o in others:
        d = o["interval"]
        lines.append(f"| {o['comparison'].name()} | {d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}] | "
                     f"{d.p:.3f} | {o['p_holm']:.3f} |")
    return lines + [""]


def _mean_sd(e: dict) -> str:
    """``mean ± sd (n=…)`` of a :func:`summarise` entry; no sd for one seed."""
    return f"{e['mean']:.1f}" + (f" ± {e['std']:.1f}" if not math.isnan(e["std"]) else "") + f" (n={e['n']})"


def _cell(e: dict | None, method: str) -> str:
    if e is None:
        return "–"
    text = _mean_sd(e)
    if method != "scratch" and e["delta_n"] >= 2:
        text += f"<br>Δ {e['delta']:+.1f} [{e['low']:+.1f}, {e['high']:+.1f}]"
    elif method != "scratch" and e["delta_n"] == 1:
        text += f"<br>Δ {e['delta']:+.1f}"
    return text


def _table(rows: list[dict], mode: str, metric: str, methods: list[str]) -> list[str]:
    s = summarise(rows, metric)
    keys = sorted({(p, lv) for (md, p, lv, _) in s if md == mode}, key=lambda k: (k[0] != "scenes", k[1]))
    if not keys:
        return []
    present = [m for m in methods if any((mode, p, lv, m) in s for p, lv in keys)]
    lines = ["| method | " + " | ".join(short_level(p, lv) for p, lv in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for m in present:
        lines.append(f"| {m} | " + " | ".join(_cell(s.get((mode, p, lv, m)), m) for p, lv in keys) + " |")
    return lines


def method_order(rows: list[dict], preferred: tuple[str, ...] = METHODS) -> list[str]:
    """The grid labels present in ``rows`` (dicts with a ``method`` key) in display order: by base method in
    the order of ``preferred`` (others after them, by name), each method's budgets ascending
    (``4dcontrast`` — the grid's own budget — then ``4dcontrast@3600s``)."""
    rank = {m: i for i, m in enumerate(preferred)}

    def key(label: str) -> tuple:
        method, _, budget = label.partition("@")
        return rank.get(method, len(rank)), method, float(budget.rstrip("s")) if budget else 0.0

    return sorted({r["method"] for r in rows}, key=key)


def _cost_lines(costs: dict, rows: list[dict], preset) -> list[str]:
    lines = []
    if costs:
        by: dict = {}
        for c in costs.values():
            by.setdefault(c["method"], []).append(c)
        lines += ["| method | pre-training config | seeds | steps | sequences (static: pairs) | frames | "
                  "budget used (s) | wall (min) |", "|---|---|---|---|---|---|---|---|"]

        def span(values, fmt="{:.0f}"):
            values = [v for v in values if v is not None]
            if not values:
                return "–"
            lo, hi = min(values), max(values)
            return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"

        for m, cs in by.items():
            if m == "scratch":
                lines.append(f"| scratch | – (random network per seed) | {len(cs)} | 0 | 0 | 0 | – | – |")
                continue
            lines.append(
                f"| {m} | {cs[0].get('config', '')} ({cs[0].get('pretrain_method', '')}) | {len(cs)} | "
                f"{span([c['steps'] for c in cs])} | {span([c['sequences'] for c in cs])} | "
                f"{span([c['frames'] for c in cs])} | {span([c.get('budget_used_s') for c in cs])} | "
                f"{span([c.get('wall_s', 0) / 60 for c in cs], '{:.1f}')} |")
        lines.append("")
    cpu = {}
    for r in rows:
        if r.get("cpu_seconds"):
            cpu.setdefault(r["mode"], []).append(float(r["cpu_seconds"]))
    if cpu:
        lines.append("Downstream runs: " + "; ".join(
            f"{MODE_NAMES[m]} {np.mean(v):.0f} CPU s per run ({len(v)} runs, {np.sum(v) / 3600:.1f} CPU h)"
            for m, v in sorted(cpu.items())) + ".")
        lines.append("")
    return lines


def _steps_text(p: dict) -> str:
    """``"500 steps at 1 % of scenes, …, 1000 steps elsewhere"`` from a preset dict."""
    at = [f"{steps} steps at {short_level(protocol, level)}"
          for protocol, level, steps in p.get("finetune_steps_at", ())]
    if not at:
        return f"{p['finetune_steps']} steps"
    return ", ".join(at) + f", {p['finetune_steps']} steps elsewhere"


def _steps_source(p: dict, preset=None) -> str:
    """The results file that picked a grid's step counts: the spec's ``steps_source``, else (a spec written
    before that field) the preset's, else the 100-room convergence study's."""
    source = p.get("steps_source") or getattr(preset, "steps_source", None) or "downstream_convergence.md"
    return f"`benchmarks/results/{source}`"


def _row_seeds(rows: list[dict]) -> list[int]:
    """The seeds the rows hold: what the report is about. Not the grid spec's ``seeds``, which is the
    last invocation's (a resumed run with ``--seeds 1`` records ``[0]`` for a grid of seeds 0-2)."""
    return sorted({int(r["seed"]) for r in rows})


def markdown_report(rows: list[dict], costs: dict | None = None, spec: dict | None = None,
                    preset=None, preset_name: str = "") -> str:
    """The results markdown (see the module docstring); ``rows`` are :func:`read_results` rows."""
    methods = method_order(rows)
    lines = ["# Downstream benchmark: semantic segmentation on the embedded rooms", ""]
    if spec:
        p = spec["preset"]
        lines += [f"Grid `{spec.get('preset_name', preset_name)}` of `fourdcontrast benchmark downstream`, "
                  "on "
                  f"{spec.get('machine', 'an unrecorded machine')}. Evaluated once per configuration on the "
                  f"{p['rooms']['test']} **test** rooms (every tuning decision used the {p['rooms']['val']} "
                  f"validation rooms); {p['rooms']['train']} training rooms; seeds {_row_seeds(rows)} "
                  "(seed s pre-trains every method with seed s, draws the data subsets and fine-tunes "
                  "with it).", ""]
    primary = primary_comparisons(spec)
    where = ("the grid's preset (`primary` in `fourdcontrast/downstream/benchmark.py`)" if primary is not
             PRIMARY_COMPARISONS else "`fourdcontrast/downstream/report.py` (`PRIMARY_COMPARISONS`)")
    lines += ["## Pre-declared primary comparisons", "",
              f"Fixed in {where} before the grid ran:", ""]
    lines += [f"{i}. {c.name()}" for i, c in enumerate(primary, 1)]
    lines += ["", "Metric: mIoU (%) over the 12 classes on the test rooms. Estimate: the mean of the paired "
              "differences over seeds with its 95 % t interval (n − 1 degrees of freedom); a comparison "
              "goes one way when its interval excludes 0. Every other cell (each method − scratch, and "
              "4DContrast − PointContrast at the other levels, both modes) is tested with the paired t test, "
              "Holm-corrected over all those cells together (α = 0.05).", ""]
    if spec:
        p = spec["preset"]
        if p["pretrain_budget_s"] is None:
            budget = f"{p['pretrain_steps']} steps"
        else:
            budget = f"{p['pretrain_budget_s']:g} s of {p['pretrain_budget_clock']} time"
            if p["pretrain_budget_clock"] == "process":
                budget += " (CPU seconds of the pre-training process)"
        cap = f", capped at {p['pretrain_steps']} steps" if p["pretrain_budget_s"] is not None else ""
        lines += ["## Budgets", "",
                  f"- Pre-training: every method gets the same budget, {budget}{cap}, with "
                  f"`{' '.join(p['pretrain_overrides'])}`; the table gives the steps, sequences and frames "
                  "each method saw in it.",
                  f"- Fine-tuning: every method {_steps_text(p)} of `configs/finetune/"
                  f"{p['finetune_config']}.yaml` ({', '.join(p['finetune_overrides']) or 'no overrides'}); "
                  f"the step counts were picked on the validation rooms ({_steps_source(p, preset)})"
                  + "".join(f"; at {short_level(pr, lv)} only {', '.join(ms)}"
                            + (" (the full-data ceiling of the sanity checks, not a comparison)"
                               if pr == "scenes" and float(lv) == 1.0 else "")
                            for pr, lv, ms in p.get("finetune_methods_at", ()))
                  + ".",
                  "- Linear probe: the same full-batch probe for every method (`optim.probe_*` of the "
                  "fine-tuning config).", ""]
    lines += _cost_lines(costs or {}, rows, preset)
    if any(r.get("format") == 1 for r in rows):
        lines += ["**This CSV is of the earlier format** (one pre-training per method, 40 fine-tuning "
                  "steps); the comparisons below need the replicated grid.", ""]
    values = cell_values(rows, "miou")
    lines += ["## Primary comparisons: results", ""]
    for c in primary:
        lines.append(f"- {primary_sentence(c, compare(values, c))}")
    lines.append("")
    lines += budget_curve_lines(rows, spec)
    lines += sanity_lines(sanity_checks(rows))
    for metric, title in METRICS.items():
        for mode, mode_title in (("finetune", "Fine-tuning"), ("linear", "Linear probe (frozen backbone)")):
            table = _table(rows, mode, metric, methods)
            if table:
                lines += [f"## {mode_title}: {title} (%)", "",
                          "Mean ± std over seeds (n); Δ: difference to scratch paired by seed "
                          "[95 % t interval].",
                          "", *table, ""]
    lines += holm_lines(other_comparisons(rows, primary=primary), "mIoU")
    iou_cols = [k for k in (rows[0] if rows else {}) if k.startswith("iou_")]
    if iou_cols:
        lines += ["## Per-class IoU (%), fine-tuned, mean over seeds", "",
                  "| method | level | " + " | ".join(c[4:] for c in iou_cols) + " |",
                  "|---|---|" + "---|" * len(iou_cols)]
        for m in methods:
            for p, lv in (("scenes", 0.01), ("points", 20), ("scenes", 1.0)):
                sel = [r for r in rows if r["mode"] == "finetune" and r["method"] == m and r["protocol"] == p
                       and float(r["level"]) == lv]
                if sel:
                    means = [np.nanmean([100 * float(r[c]) if r[c] not in ("", "nan") else np.nan
                                         for r in sel]) for c in iou_cols]
                    lines.append(f"| {m} | {short_level(p, lv)} | "
                                 + " | ".join(f"{v:.1f}" for v in means) + " |")
        lines.append("")
    if rows and "loaded" in rows[0]:
        loads = sorted({(r["mode"], r["method"] == "scratch", r["loaded"], r["skipped"]) for r in rows})
        lines += ["## Loading", "", "Tensors loaded / skipped per run (guarded: fine-tuning may skip only "
                  "the classification head, the probe nothing): " + "; ".join(
                      f"{MODE_NAMES[m]} {'scratch' if sc else 'pre-trained'} {lo} / {sk}"
                      for m, sc, lo, sk in loads) + ".", ""]
    return "\n".join(lines)


def map_sanity_checks(rows: list[dict], chance_floor: float = 50.0) -> list[SanityCheck]:
    """The instance / detection grid's sanity checks: scratch fine-tuned, more scenes ≥ fewer (mAP@0.5 and
    @0.25), and scratch on 100 % of the scenes clearly above chance: mAP@0.25 ≥ ``chance_floor`` (issue
    28's bar on the embedded rooms)."""
    checks = []
    for metric in ("map50", "map25"):
        more = [c for c in sanity_checks(rows, metric)
                if c.name.startswith("scratch fine-tuned: more scenes")]
        checks += [SanityCheck(f"{c.name} ({MAP_METRICS[metric]})", c.passed, c.detail) for c in more]
    ceiling = summarise(rows, "map25").get(("finetune", "scenes", 1.0, "scratch"))
    checks.append(SanityCheck(
        f"scratch on 100 % of the scenes: mAP@0.25 ≥ {chance_floor:g}",
        None if ceiling is None else ceiling["mean"] >= chance_floor,
        "not run" if ceiling is None else _mean_sd(ceiling)))
    return checks


def map_markdown_report(rows: list[dict], task: str, costs: dict | None = None, spec: dict | None = None,
                        preset_name: str = "", preset=None) -> str:
    """The results markdown of an instance or detection grid: setup, the pre-declared primary comparisons
    (mAP@0.5, paired 95 % t intervals), sanity checks, tables of every metric (mean ± std over seeds, Δ to
    scratch with its interval), the other cells Holm-corrected, per-class AP@0.5 and the costs."""
    methods = method_order(rows)
    dataset = (spec or {}).get("preset", {}).get("dataset", "embedded")
    title, unit = DATASET_TITLES[dataset]
    lines = [f"# Downstream benchmark: {TASK_TITLES[task]} on {title}", ""]
    if spec:
        p = spec["preset"]
        lines += [f"Grid `{spec.get('preset_name', preset_name)}` of `fourdcontrast benchmark downstream`, "
                  f"on {spec.get('machine', 'an unrecorded machine')}. Evaluated once per configuration on "
                  f"the {p['rooms']['test']} **test** {unit} (every tuning decision used the "
                  f"{p['rooms']['val']} validation {unit}); {p['rooms']['train']} training {unit}; seeds "
                  f"{_row_seeds(rows)} (seed s pre-trains every method with seed s, draws the scene "
                  "subset and fine-tunes with it). "
                  f"Fine-tuning: {_steps_text(p)} of `configs/finetune/{p['finetune_config']}.yaml` "
                  f"({', '.join(p['finetune_overrides']) or 'no overrides'}; the step count was picked on "
                  f"the validation {unit}: {_steps_source(p, preset)}); pre-training as in the "
                  "semantic grid (the same configs and budgets, the same cached backbones).", ""]
    primary = primary_comparisons(spec)
    lines += ["## Pre-declared primary comparisons", "",
              "Fixed in the grid's preset (`primary` in `fourdcontrast/downstream/benchmark.py`) before the "
              "grid ran:", ""]
    lines += [f"{i}. {c.name()}" for i, c in enumerate(primary, 1)]
    metric = (spec or {}).get("preset", {}).get("primary_metric") or "map50"
    lines += ["", f"Metric: {MAP_METRICS[metric]} (%) over the thing classes on the test {unit}; the mean "
              "of the paired differences over seeds with its 95 % t interval. Every other cell is tested "
              "with the paired t test, Holm-corrected over those cells together (α = 0.05).", ""]
    lines += _cost_lines(costs or {}, rows, None)
    values = cell_values(rows, metric)
    lines += ["## Primary comparisons: results", ""]
    key = task if dataset == "embedded" else f"{task}@{dataset}"
    for c in primary:
        paper = PAPER_MAP.get((key, _base(c.b), float(c.level))) or PAPER_MAP.get((key, _base(c.b), 0.10),
                                                                                 "the paper")
        lines.append(f"- {primary_sentence(c, compare(values, c), MAP_METRICS[metric], paper)}")
    lines.append("")
    lines += sanity_lines(map_sanity_checks(rows))
    for metric, title in MAP_METRICS.items():
        table = _table(rows, "finetune", metric, methods)
        if table and any(r.get(metric) not in (None, "") for r in rows):
            lines += [f"## Fine-tuned: {title} (%)", "",
                      "Mean ± std over seeds (n); Δ: difference to scratch paired by seed [95 % t interval].",
                      "", *table, ""]
    lines += holm_lines(other_comparisons(rows, metric, primary=primary), MAP_METRICS[metric])
    ap_cols = [k for k in (rows[0] if rows else {}) if k.startswith("ap50_")]
    if ap_cols:
        levels = sorted({float(r["level"]) for r in rows})
        lines += ["## Per-class AP@0.5 (%), mean over seeds", "",
                  "| method | level | " + " | ".join(c[5:] for c in ap_cols) + " |",
                  "|---|---|" + "---|" * len(ap_cols)]
        for m in methods:
            for lv in levels:
                sel = [r for r in rows if r["method"] == m and float(r["level"]) == lv]
                if sel:
                    present = [[100 * float(r[c]) for r in sel if r.get(c) not in (None, "", "nan")]
                               for c in ap_cols]  # a class absent from the test rooms has no AP
                    means = [float(np.mean(v)) if v else np.nan for v in present]
                    lines.append(f"| {m} | {short_level('scenes', lv)} | "
                                 + " | ".join("–" if np.isnan(v) else f"{v:.1f}" for v in means) + " |")
        lines.append("")
    return "\n".join(lines)


# --- plots ----------------------------------------------------------------------------------------
def plot_figure4(rows: list[dict], path: str | os.PathLike, metric: str = "miou",
                 methods: tuple[str, ...] | None = None, min_span: float = 20.0) -> None:
    """Figure-4-style plots: the metric against the share of scenes and the labelled points, fine-tuned
    (top) and probed (bottom); mean ± std over seeds. The levels are equally spaced with plain labels, and
    every y axis spans at least ``min_span`` points, so a 1-point gap looks like one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(rows, metric)
    modes = [m for m in ("finetune", "linear") if any(k[0] == m for k in s)]
    if not modes:
        return
    order = method_order(rows, methods or METHODS)
    protocols = [p for p in ("scenes", "points") if any(k[1] == p for k in s)]
    fig, axes = plt.subplots(len(modes), len(protocols), figsize=(5.5 * len(protocols), 3.8 * len(modes)),
                             squeeze=False)
    for i, mode in enumerate(modes):
        lo, hi = math.inf, -math.inf
        for j, protocol in enumerate(protocols):
            ax = axes[i, j]
            levels = sorted({k[2] for k in s if k[0] == mode and k[1] == protocol})
            for m in order:
                pts = [(levels.index(lv), s[(mode, protocol, lv, m)]) for lv in levels
                       if (mode, protocol, lv, m) in s]
                if not pts:
                    continue
                style = line_style(m)
                y = [e["mean"] for _, e in pts]
                err = [0 if math.isnan(e["std"]) else e["std"] for _, e in pts]
                ax.errorbar([x for x, _ in pts], y, yerr=err, marker="o", capsize=3, label=m, **style)
                lo, hi = min(lo, *(a - b for a, b in zip(y, err, strict=True))), \
                    max(hi, *(a + b for a, b in zip(y, err, strict=True)))
            ax.set_xticks(range(len(levels)), [short_level(protocol, lv) for lv in levels])
            ax.set_xlabel("share of training scenes" if protocol == "scenes" else "labelled points per scene")
            ax.set_ylabel(f"{({**METRICS, **MAP_METRICS})[metric]} (%), test rooms")
            limited = "scene reconstructions" if protocol == "scenes" else "annotations"
            ax.set_title(f"{MODE_NAMES[mode]}: limited {limited}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        if math.isfinite(lo):
            low = max(0.0, math.floor(lo) - 2)
            top = max(low + min_span, math.ceil(hi) + 2)
            for ax in axes[i]:
                ax.set_ylim(low, top)
                ax.yaxis.get_major_formatter().set_useOffset(False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def line_style(label: str, long: bool | None = None) -> dict:
    """Matplotlib style of a grid label: a colour per method (4DContrast red, PointContrast blue, scratch
    black dashed), solid and thick at the long budget (``<method>@<budget>s``, or ``long=True``), dotted at
    the grid's own."""
    method, _, budget = label.partition("@")
    budget = bool(budget) if long is None else long
    colour = {"4dcontrast": "#d62728", "pointcontrast": "#1f77b4", "4dcontrast-paper-literal": "#9467bd"}
    if method == "scratch":
        return {"lw": 1.8, "color": "k", "ls": "--"}
    style = {"lw": 2.4 if budget else 1.4, "ls": "-" if budget else ":"}
    return {**style, "color": colour[method]} if method in colour else style


def plot_budget_curve(rows: list[dict], path: str | os.PathLike, default_budget_s: float | None,
                      metric: str = "miou") -> bool:
    """The gain over scratch against the pre-training budget (:func:`budget_curve`): one panel per mode and
    level, the paired mean difference with its 95 % t interval (no bar for one seed) at each budget (CPU
    seconds, log scale), one line per method. Returns False (and writes nothing) when no method has rows at
    two budgets."""
    curve = budget_curve(rows, default_budget_s, metric)
    if not curve:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({k[:3] for k in curve}, key=lambda k: (k[0] != "finetune", k[1] != "scenes", k[2]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (mode, protocol, level) in zip(axes[0], panels, strict=True):
        for (md, p, lv, method), entries in curve.items():
            if (md, p, lv) != (mode, protocol, level):
                continue
            x = [b for b, _ in entries]
            y = [d.mean for _, d in entries]
            err = [[d.mean - d.low if d.n > 1 else 0 for _, d in entries],
                   [d.high - d.mean if d.n > 1 else 0 for _, d in entries]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method,
                        **{**line_style(method, long=True), "lw": 1.8})
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        budgets = sorted({b for k, v in curve.items() if k[:3] == (mode, protocol, level) for b, _ in v})
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("pre-training budget (CPU s)")
        ax.set_ylabel(f"Δ {({**METRICS, **MAP_METRICS})[metric]} vs scratch")
        ax.set_title(f"{MODE_NAMES[mode]}, {short_level(protocol, level)}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return True


def write_report(out: str | os.PathLike, preset=None, preset_name: str = "") -> None:
    """Rebuild ``downstream.md``, ``downstream_figure4.png`` (mIoU), ``downstream_figure4_objects.png``
    (without wall and floor) and, once a method has rows at two pre-training budgets,
    ``downstream_budget_curve.png`` (:func:`plot_budget_curve`) in ``out`` from its ``downstream.csv``,
    ``downstream_pretrain_cost.json`` and ``downstream_grid.json``."""
    out = Path(out)
    rows = read_results(out / "downstream.csv")
    cost_file, spec_file = out / "downstream_pretrain_cost.json", out / "downstream_grid.json"
    costs = json.loads(cost_file.read_text()) if cost_file.is_file() else None
    if costs and not all(isinstance(v, dict) and "method" in v for v in costs.values()):
        costs = None  # the earlier format's cost file
    spec = json.loads(spec_file.read_text()) if spec_file.is_file() else None
    task = (spec or {}).get("preset", {}).get("task") or getattr(preset, "task", "segmentation")
    if task != "segmentation":
        text = map_markdown_report(rows, task, costs, spec, preset_name, preset)
        atomic_write_bytes(out / "downstream.md", (text + "\n").encode())
        metric = (spec or {}).get("preset", {}).get("primary_metric") or "map50"
        plot_figure4(rows, out / "downstream_figure4.png", metric)
        return
    text = markdown_report(rows, costs, spec, preset, preset_name)
    atomic_write_bytes(out / "downstream.md", (text + "\n").encode())
    plot_figure4(rows, out / "downstream_figure4.png", "miou")
    plot_budget_curve(rows, out / "downstream_budget_curve.png",
                      (spec or {}).get("preset", {}).get("pretrain_budget_s"))
    if rows and "miou_objects" in rows[0]:
        plot_figure4(rows, out / "downstream_figure4_objects.png", "miou_objects")
