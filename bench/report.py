"""results/*.json -> results/latest.md (the table) and results/latest.png (ratios, headless)."""

import json
import statistics
import time

from bench.common import RESULTS, Row, load_rows

MARKDOWN = RESULTS / "latest.md"
CHART = RESULTS / "latest.png"
ORDER = ("provisioning", "rollout", "metrics_tick", "backup", "restore", "broker_overhead",
         "floor", "scaleout", "retention", "api", "warm_pool")


def _rows() -> list[tuple[str, Row]]:
    out = []
    for name in ORDER:
        path = RESULTS / f"{name}.json"
        if path.exists():
            at = json.loads(path.read_text())["at"]
            out += [(at, r) for r in load_rows(path)]
    return out


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{min(values):.3g} / {statistics.median(values):.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def write() -> None:
    rows = _rows()
    lines = [
        f"# Benchmark results ({time.strftime('%Y-%m-%d %H:%M')})", "",
        "Figures are min / median over the repetitions; the ratio is median ours ÷ median"
        " baseline, both measured in the same run. ↑ = higher is better, ↓ = lower is better.",
        "",
        "| benchmark | size | unit | ours (min / median) | baseline (min / median) |"
        " ratio ours/baseline | reps | goal | met | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for at, r in rows:
        r = Row(**{**r.__dict__, **{k: _cell(getattr(r, k)) for k in
                                    ("benchmark", "size", "baseline_name", "goal", "notes")}})
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        base = f"{_fmt(r.baseline)} ({r.baseline_name})" if r.baseline else "—"
        arrow = "↑" if r.higher_is_better else "↓"
        lines.append(f"| {r.benchmark} | {r.size} | {r.unit} {arrow} | {_fmt(r.ours)} | {base} |"
                     f" {ratio} | {len(r.ours)} | {r.goal or '—'} | {met} | {r.notes} ({at}) |")
    MARKDOWN.write_text("\n".join(lines) + "\n")
    _chart([r for _, r in rows if r.ratio is not None])


def _chart(rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.benchmark}\n{r.size}" for r in rows]
    ratios = [r.ratio or 0.0 for r in rows]
    good = [(x >= 1) == r.higher_is_better or x == 1 for x, r in zip(ratios, rows, strict=True)]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.5))
    ax.barh(labels, ratios, color=["tab:green" if g else "tab:red" for g in good])
    ax.axvline(1.0, color="black", linewidth=1)
    for y, (x, r) in enumerate(zip(ratios, rows, strict=True)):
        ax.text(x, y, f" {x:.2f} ({'↑' if r.higher_is_better else '↓'} better)", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("median ours ÷ median same-run baseline (1.0 = baseline)")
    ax.set_title("Tenant Service benchmarks: ratio to the baseline")
    ax.set_xlim(0, max([*ratios, 1.0]) * 1.35)
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    write()
