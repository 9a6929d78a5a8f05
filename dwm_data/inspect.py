"""What is in a set of shards, in one report (for `inspect` and for people deciding to train)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError
from dwm_data.sample import OPTIONAL_VIDEOS, Sample
from dwm_data.store import iter_members, shard_paths

OPTIONAL_MEMBERS = ("camera.npy", "hands.npz", *(f"{name}.mp4" for name in OPTIONAL_VIDEOS))


def inspect_shards(spec: str | Path) -> dict[str, Any]:
    """Read every sample (headers only, no decoding) and tally what a user asks first."""
    paths = shard_paths(spec)
    sources: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    pix_fmts: Counter[str] = Counter()
    extras: Counter[str] = Counter()
    invalid: list[str] = []
    prompts: list[str] = []
    empty_prompts = 0
    samples = 0
    for path in paths:
        for members in iter_members(path):
            samples += 1
            try:
                sample = Sample.from_wds(members)
                info = sample.validate()
            except (DwmDataError, ValueError) as exc:
                invalid.append(f"{path.name}: {exc}")
                continue
            sources[sample.meta.get("source", {}).get("name", "?")] += 1
            shapes[
                f"{info.frames} frames {info.width}x{info.height} @ {float(info.fps):g} fps"
            ] += 1
            pix_fmts["/".join(sample.infos[n].pix_fmt for n in ("video", "static", "hand"))] += 1
            extras.update(n for n in OPTIONAL_MEMBERS if n in members)
            if sample.prompt.strip():
                prompts.append(sample.prompt.strip())
            else:
                empty_prompts += 1
    report: dict[str, Any] = {
        "shards": len(paths),
        "bytes": sum(p.stat().st_size for p in paths),
        "samples": samples,
        "invalid": invalid,
        "sources": dict(sources),
        "shapes": dict(shapes),
        "pix_fmts (video/static/hand)": dict(pix_fmts),
        "optional members": dict(extras),
        "prompts": {
            "empty": empty_prompts,
            "mean words": round(sum(len(p.split()) for p in prompts) / len(prompts), 1)
            if prompts
            else 0,
            "examples": prompts[:3],
        },
    }
    run_root = Path(spec)
    if (run_root / "plan.json").exists():
        from dwm_data.runs.status import run_status

        status = run_status(run_root)
        report["run"] = {
            "units": status.units,
            "done": status.done,
            "failed": status.failed,
            "pending": status.pending,
            "failures": [f"{f['unit']} [{f['stage']}] {f['message']}" for f in status.failures],
        }
    return report


def render_report(report: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, title="shards", title_justify="left")
    table.add_row("shards", f"{report['shards']} ({report['bytes'] / 1e6:.1f} MB)")
    table.add_row("samples", str(report["samples"]))
    for name in ("sources", "shapes", "pix_fmts (video/static/hand)", "optional members"):
        table.add_row(name, ", ".join(f"{k}: {v}" for k, v in report[name].items()) or "-")
    prompts = report["prompts"]
    table.add_row("prompts", f"{prompts['empty']} empty, {prompts['mean words']} words on average")
    for example in prompts["examples"]:
        table.add_row("", f"[dim]{escape(example[:110])}[/dim]")
    if "run" in report:
        run = report["run"]
        table.add_row(
            "run",
            f"{run['done']} done, {run['failed']} failed, {run['pending']} pending of {run['units']} units",
        )
    console.print(table)
    for line in report["invalid"]:
        console.print(f"[red]invalid[/red] {escape(line)}")
    for line in report.get("run", {}).get("failures", [])[:20]:
        console.print(f"[red]failed[/red] {escape(line)}")
