"""`dwm-data eval`: every clip generated per seed, written, read back and scored with the official
metrics; the table in metrics.{json,csv,md}; the run's own recipe used by sample and eval."""

# ruff: noqa: F811 (fixtures imported from other test modules are parameters here)
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from test_metrics import dreamsim_folder, one_thread, vgg_file  # noqa: F401
from test_model import FRAMES, HEIGHT, WIDTH, shard_dir, tiny_base, trained_like  # noqa: F401

from dwm_data.recipe import load_recipe
from dwm_data.video import decode, probe

pytest.importorskip("torchmetrics")


@pytest.fixture(scope="module")
def world_model(tiny_base, tmp_path_factory):
    from dwm_model.generate import WorldModel
    from dwm_model.model import save_weights

    folder = tmp_path_factory.mktemp("weights")
    record = {"rank": 4, "alpha": 8, "base_model": str(tiny_base), "text_length": 32}
    save_weights(trained_like(tiny_base), folder, record)
    return WorldModel.from_weights(folder)


@pytest.mark.slow
def test_eval_scores_every_clip_over_its_seeds_and_writes_the_table(
    world_model, vgg_file, dreamsim_folder, tmp_path
):
    from test_model import write_shard
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from dwm_data.store import read_samples
    from dwm_model.evaluate import evaluate

    shard = tmp_path / "e-000000.tar"
    write_shard(shard, [20, 21, 22], broken={20: "corrupt"})
    settings = ["eval.steps=1", "eval.limit=0", "eval.seeds=2", f"eval.lpips_backbone={vgg_file}"]
    recipe = load_recipe("tiny", [*settings, f"eval.dreamsim_folder={dreamsim_folder}"])
    notes: list[str] = []
    out = tmp_path / "eval"
    summary = evaluate([shard], world_model, recipe, out, notify=notes.append)
    assert (summary["samples"], summary["skipped"], summary["seeds"]) == (2, 1, 2)
    assert summary["metrics"] == ["psnr", "ssim", "lpips", "dreamsim"] and not notes
    truth: dict[str, np.ndarray] = {}
    for sample in read_samples([shard], validate=False):
        if sample.key != "syn-0020":
            truth[sample.key] = decode(sample.video)
    assert set(summary["per_sample"]) == set(truth) == {"syn-0021", "syn-0022"}
    for index, (key, scores) in enumerate(sorted(summary["per_sample"].items())):
        runs = scores["per_seed"]
        assert [r["seed"] for r in runs] == [
            42 + index,
            43 + index,
        ]  # clip i: seed + i, as official
        for run in runs:  # each prediction scored as read back from its mp4
            pred = decode(out / "videos" / key / f"seed-{run['seed']}.mp4")
            x, y = (
                torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in (pred, truth[key])
            )
            expected = float(peak_signal_noise_ratio(x, y, data_range=1.0))
            assert run["psnr"] == pytest.approx(expected, abs=1e-4)
            assert run["lpips"] > 0 and 0 < run["dreamsim"] < 2 and -1 < run["ssim"] < 1
        assert runs[0]["psnr"] != runs[1]["psnr"]
        for name in summary["metrics"]:
            assert scores[name] == pytest.approx(np.mean([r[name] for r in runs]))
    assert summary["mean"]["psnr"] == pytest.approx(
        np.mean([s["psnr"] for s in summary["per_sample"].values()])
    )
    assert probe(out / "previews" / "syn-0021.mp4").width == 4 * WIDTH

    assert json.loads((out / "metrics.json").read_text())["mean"] == summary["mean"]
    rows = list(csv.reader((out / "metrics.csv").open()))
    assert rows[0] == ["sample", "psnr", "ssim", "lpips", "dreamsim"]
    assert [r[0] for r in rows[1:]] == ["syn-0021", "syn-0022", "mean"]
    assert float(rows[-1][1]) == pytest.approx(summary["mean"]["psnr"])
    table = (out / "metrics.md").read_text().splitlines()
    assert table[0] == "| sample | psnr ↑ | ssim ↑ | lpips ↓ | dreamsim ↓ |"
    assert table[-1].startswith("| mean (2 samples x 2 seeds) | ")


def test_eval_without_metric_weights_says_so_once_and_scores_the_rest(world_model, tmp_path):
    from test_model import write_shard

    from dwm_model.evaluate import evaluate

    shard = tmp_path / "e-000000.tar"
    write_shard(shard, [30])
    missing = [f"eval.lpips_backbone={tmp_path / 'vgg16.pth'}", "eval.dreamsim_folder=nowhere"]
    recipe = load_recipe("tiny", ["eval.steps=1", *missing])
    notes: list[str] = []
    summary = evaluate([shard], world_model, recipe, tmp_path / "eval", notify=notes.append)
    assert summary["metrics"] == ["psnr", "ssim"] and len(notes) == 2
    assert str(tmp_path / "vgg16.pth") in notes[0] and "nowhere" in notes[1]
    assert set(summary["missing"]) == {"lpips", "dreamsim"}
    assert notes[1] in (tmp_path / "eval" / "metrics.md").read_text()


@pytest.mark.slow
def test_cli_train_then_sample_and_eval_use_the_runs_recipe(
    shard_dir, tiny_base, tmp_path, monkeypatch
):
    """Train with --base-model; sample and eval then need no -r: sizes and settings come from
    the run's recipe.json (an eval run on the dwm recipe would refuse 64x48 clips)."""
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    help_text = ok("train", "--help")
    assert "--base-model" in help_text and "folder you run in" in help_text
    monkeypatch.setenv("DWM_MODEL_CACHE", str(tmp_path / "no-tiny-here"))
    run = tmp_path / "run"
    steps = ["--set", "train.max_steps=2", "--set", "train.checkpoint_every=2"]
    ok("train", shard_dir, "--out", run, "--quiet", "--base-model", tiny_base, "-r", "tiny", *steps)
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["train"]["base_model"] == str(tiny_base) and saved["video"]["width"] == WIDTH
    assert not (tmp_path / "no-tiny-here").exists()  # the given folder, not a tiny one made

    ok("sample", run, tmp_path / "s.mp4", "--shards", shard_dir, "--key", "syn-0002", "--steps", 1)
    assert probe(tmp_path / "s.mp4").frames == FRAMES
    output = ok(
        "eval",
        run / "checkpoints" / "step-000002",
        shard_dir,
        "--out",
        tmp_path / "eval",
        "--seeds",
        2,
        "--set",
        "eval.limit=1",
        "--set",
        "eval.steps=1",
        "--set",
        "eval.metrics=[psnr, ssim]",
    )
    assert "psnr ↑" in output and "mean (1 sample x 2 seeds)" in output
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert summary["seeds"] == 2 and summary["settings"]["steps"] == 1
    shutil.rmtree(tmp_path / "eval")
