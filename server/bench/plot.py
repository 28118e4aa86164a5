"""PNG plots of bench JSON files (docs/benchmarks.md): `python -m sdxl_breeder.bench plot A.json B.json --out DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence



def runs_of(res: dict[str, Any]) -> list[dict[str, Any]]:
    """A bench file's runs, one per VAE, each with its machine (version 1 files hold one run)."""
    if "runs" not in res:
        return [res]
    return [{**run, "machine": res["machine"]} for run in res["runs"]]


def _label(r: dict[str, Any]) -> str:
    c = r["config"]
    extra = [k for k, on in (("compiled", c.get("compile")), ("channels_last", c.get("channels_last") and r["machine"]["device"] == "cpu"),
                             (f"VAE chunk {c.get('vae_chunk')}", c.get("vae_chunk")), ("no ws deflate", c.get("ws_deflate") is False)) if on]
    return f"{c['model']} {c['size']}², VAE {c['vae']}" + "".join(f", {e}" for e in extra)


def _where(r: dict[str, Any]) -> str:
    m = r["machine"]
    return m["gpu"] or f"{m['cpu_count']}-core CPU"


def plot(paths: Sequence[Path], out: Path, prefix: str = "cpu") -> list[Path]:
    """Three PNGs: frames/s against batch size (renderer; naive as a dotted line; end to end at its
    mean batch), the same as a multiple of each run's own naive baseline, and latency against clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    runs = [run for p in paths for run in runs_of(json.loads(Path(p).read_text(encoding="utf-8")))]
    runs = [r for r in runs if r.get("naive") and r.get("renderer")]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    batches = sorted({row["batch"] for r in runs for row in r["renderer"]})

    def finish(fig: Any, ax: Any, name: str, title: str, xlabel: str, ylabel: str, xticks: list[int]) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xticks)
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{prefix}-{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    for name, ratio in (("fps-vs-batch", False), ("speedup-vs-batch", True)):
        fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
        for i, r in enumerate(runs):
            color, base = f"C{i}", (r["naive"]["fps"] if ratio else 1.0)
            ax.plot([row["batch"] for row in r["renderer"]], [row["fps"] / base for row in r["renderer"]], "o-", color=color, label=f"renderer: {_label(r)}")
            if not ratio:
                ax.axhline(r["naive"]["fps"], color=color, ls=":", lw=1.2, label=f"naive stock pipeline: {_label(r)}")
            for row in r["end_to_end"]:
                if row["mean_batch"]:
                    ax.plot([row["mean_batch"]], [row["fps"] / base], marker="s", ms=8, color=color, ls="none", mfc="none")
                    ax.annotate(f"{row['clients']} cl.", (row["mean_batch"], row["fps"] / base), textcoords="offset points", xytext=(6, -3), fontsize=7, color=color)
            for row in r.get("broods", []):  # at its mean batch; × its own naive (the same children one by one)
                x, y = row["children"] / len(row["batches"]), row["engine_over_naive"] if ratio else row["engine_children_per_s"]
                ax.plot([x], [y], marker="^", ms=8, color=color, ls="none", mfc="none")
                ax.annotate(f"brood {row['children']}", (x, y), textcoords="offset points", xytext=(6, 3), fontsize=7, color=color)
        if ratio:
            ax.axhline(1.0, color="black", ls=":", lw=1, label="naive stock pipeline (= 1)")
            ax.axhline(2.0, color="grey", ls="--", lw=1, label="target for end to end (2×)")
        ax.plot([], [], marker="s", ms=8, color="grey", ls="none", mfc="none", label="end to end, at its mean batch (label: clients)")
        if any(r.get("broods") for r in runs):
            ax.plot([], [], marker="^", ms=8, color="grey", ls="none", mfc="none", label="brood by evolve, at its mean batch (label: children)")
        finish(
            fig, ax, name,
            f"{'Speed-up over the naive pipeline' if ratio else 'Throughput'} vs batch size ({_where(runs[0])})",
            "batch size (frames per render call)", "× naive frames/s (same run)" if ratio else "frames / s", batches,
        )

    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    for i, r in enumerate(runs):
        color = f"C{i}"
        n = [row["clients"] for row in r["end_to_end"]]
        ax.plot(n, [row["latency_ms"]["p50"] for row in r["end_to_end"]], "o-", color=color, label=f"p50: {_label(r)}")
        ax.plot(n, [row["latency_ms"]["p95"] for row in r["end_to_end"]], "^--", color=color, label=f"p95: {_label(r)}")
    finish(
        fig, ax, "latency-vs-clients", f"Move → frame latency vs clients, client-measured ({_where(runs[0])})",
        "concurrent websocket clients", "latency (ms)", sorted({row["clients"] for r in runs for row in r["end_to_end"]}),
    )
    return written
