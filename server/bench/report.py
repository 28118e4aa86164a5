"""The bench's printed summary: one table per VAE, the stage breakdown, and met/missed per target."""

from __future__ import annotations

from typing import Any

ROUNDS = 3  # the measured sides of a comparison (naive vs renderer, naive vs brood) alternate this many times


def say(msg: str) -> None:
    """One line of the bench's progress, shown at once."""
    print(msg, flush=True)

CPU_OVERHEAD_MS = 3.0
GPU_FPS = {"full": 60.0, "tiny": 150.0}
GPU_LATENCY_MS = 40.0


def per_worker(row: dict[str, Any]) -> str:
    return ", ".join(f"{w} {fps:.2f} frames/s" for w, fps in row["worker_fps"].items())


def _e2e(run: dict[str, Any], clients: int) -> dict[str, Any] | None:
    return next((r for r in run.get("end_to_end", []) if r["clients"] == clients and r.get("frames")), None)


def target_lines(res: dict[str, Any]) -> list[str]:
    """One line per target that applies to this run's configuration: met or missed, with the figure."""
    m = res["machine"]
    lines = []
    for run in res["runs"]:
        c = run["config"]
        where = f"{c['model']} {c['size']}², {c['vae']} VAE, {m['device']}"
        eight, one = _e2e(run, 8), _e2e(run, 1)
        checks: list[tuple[str, float | None, float, bool]] = []
        if m["device"] == "cpu" and c["model"] == "tiny" and c["size"] == 256:
            checks.append(("server overhead per frame p50, 8 clients (ms)", eight and eight["overhead_ms"]["p50"], CPU_OVERHEAD_MS, False))
        if m["device"].startswith("cuda") and c["model"] == "sdxl-random" and c["size"] == 512:
            checks.append(("frames/s, 8 clients", eight and eight["fps"], GPU_FPS[c["vae"]], True))
            if c["vae"] == "full":
                checks.append(("one client's move-to-frame p50 (ms)", one and one["latency_ms"]["p50"], GPU_LATENCY_MS, False))
        for what, value, bound, higher in checks:
            sign = "≥" if higher else "≤"
            if value is None:
                lines.append(f"{what} {sign} {bound:g} ({where}): NOT MEASURED (phase skipped or failed)")
                continue
            met = value >= bound if higher else value <= bound
            lines.append(f"{what} {sign} {bound:g} ({where}): {'met' if met else 'MISSED'} ({value:.2f})")
    if not lines:
        lines.append("none applies here (they are: CPU tiny 256² with 8 clients; CUDA sdxl-random 512² with 1 and 8 clients)")
    return lines


def format_table(res: dict[str, Any]) -> str:
    m = res["machine"]
    where = m["gpu"] or m["cpu"]
    lines = [f"SDXL Breeder bench on {where} ({m['cpu_count']} CPUs, torch {m['torch']}, diffusers {m['diffusers']}), {m['device']} {m['dtype']}"]
    for run in res["runs"]:
        c = run["config"]
        lines += [
            "",
            f"model {c['model']}, {c['size']}×{c['size']}, VAE {c['vae']} ({c.get('vae_class')}), "
            f"compile {'on' if c['compile'] else 'off'}, channels_last {'on' if c['channels_last'] else 'off'}",
        ]
        naive = run.get("naive")
        if naive:
            lines.append(f"naive stock pipeline (batch 1): {naive['fps']:.2f} frames/s, {naive['ms_per_frame']:.1f} ms/frame")
        if run.get("renderer"):
            lines += ["renderer   batch   frames/s   ms/batch   × naive"]
            for r in run["renderer"]:
                ratio = f"{r['fps'] / naive['fps']:9.2f}" if naive else "        –"
                lines.append(f"          {r['batch']:6d} {r['fps']:10.2f} {r['ms_per_batch']:10.1f} {ratio}")
        if run.get("end_to_end"):
            lines += [
                f"end to end (max batch {c['max_batch']})",
                "clients   frames/s  slowest   mean  p50 ms  p95 ms  overhead p50  mean batch",
            ]
            for r in run["end_to_end"]:
                lines.append(
                    f"{r['clients']:7d} {r['fps'] or 0:10.2f} {r['client_fps_min'] or 0:8.2f} {r['client_fps_mean'] or 0:6.2f} "
                    f"{r['latency_ms']['p50'] or 0:7.1f} {r['latency_ms']['p95'] or 0:7.1f} {r['overhead_ms']['p50'] or 0:13.2f} {r['mean_batch'] or 0:11.2f}"
                )
                if r.get("worker_fps"):
                    lines.append(f"        per render worker: {per_worker(r)}")
            lines += ["per-frame stages, p50 ms (end to end)", "clients   " + "".join(f"{s:>14}" for s in STAGE_COLUMNS)]
            for r in run["end_to_end"]:
                st = r.get("stages_ms_per_frame_p50", {})
                lines.append(f"{r['clients']:7d}   " + "".join(f"{st[s]:14.2f}" if st.get(s) is not None else f"{'–':>14}" for s in STAGE_COLUMNS))
        if run.get("broods"):
            lines += [f"broods (evolve through the server, max batch {c['max_batch']}) vs the naive pipeline one child at a time",
                      "children  batches  last child ms  children/s  naive ms  naive children/s  × naive  × naive frames/s"]
            for b in run["broods"]:
                lines.append(f"{b['children']:8d} {'+'.join(map(str, b['batches'])):>8} {1000 * b['engine_s_to_last_child']:14.1f} "
                             f"{b['engine_children_per_s']:11.2f} {1000 * b['naive_s_to_last_child']:9.1f} "
                             f"{b['naive_children_per_s']:17.2f} {b['engine_over_naive']:8.2f} "
                             f"{b['engine_over_naive_frames'] or 0:17.2f}")
        if run.get("jpeg"):
            lines.append("JPEG ms/frame: " + ", ".join(
                f"{k} {v['ms_per_frame']:.2f}" if "ms_per_frame" in v else f"{k} n/a" for k, v in run["jpeg"].items()))
        ab = run.get("layout_ab")
        if ab and "channels_last" in ab:
            lines.append(f"eager batch {ab['batch']}: channels_last {ab['channels_last']:.2f} frames/s, contiguous {ab['contiguous']:.2f}")
    for s in res.get("skipped", []):
        lines.append(f"skipped (budget): {s['phase']}")
    other = res.get("max_other_cpu")
    if other is not None and other > 0.1:
        lines += [f"WARNING: other processes used up to {100 * other:.0f}% of the CPUs during a phase: the numbers are disturbed."]
    return "\n".join(lines)


STAGE_COLUMNS = ("blend", "text_encoders", "unet", "vae", "to_host", "jpeg", "send")
