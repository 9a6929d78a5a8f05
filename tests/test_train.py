"""The shard loader, the latent cache and the training loop on the tiny model."""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_model import FRAMES, HEIGHT, WIDTH, shard_dir, tiny_base, write_shard  # noqa: F401

from dwm_data.errors import DwmDataError
from dwm_data.recipe import load_recipe
from dwm_model.config import EvalConfig
from dwm_model.data import cached_shards, geometry_note, make_loader, to_tensor, video_decoder
from dwm_model.train import NonFiniteLoss, Trainer, checkpoints, run_recipe, train

SHORT = [
    "train.max_steps=6",
    "train.checkpoint_every=3",
    "train.warmup_steps=2",
    "train.batch_size=2",
]


@pytest.fixture
def model_cache(tmp_path_factory, monkeypatch, tiny_base):
    """$DWM_MODEL_CACHE holding the tiny base model `base_model: tiny` resolves to."""
    root = tmp_path_factory.getbasetemp() / "model-cache"
    target = root / f"tiny-{WIDTH}x{HEIGHT}x{FRAMES}"
    if not target.exists():
        shutil.copytree(tiny_base, target)
    monkeypatch.setenv("DWM_MODEL_CACHE", str(root))
    return target


def shards_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tar"))


def test_loader_gives_videos_in_minus_one_one_and_every_sample_once(shard_dir):
    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    urls = [str(p) for p in shards_of(shard_dir)]
    batches = list(make_loader(urls, stage, 2, train=False))
    keys = [k for b in batches for k in b["key"]]
    assert sorted(keys) == [f"syn-{i:04d}" for i in range(6)]
    batch = batches[0]
    for name in ("video", "static", "hand"):
        assert batch[name].shape == (2, 3, FRAMES, HEIGHT, WIDTH)
        assert batch[name].dtype == torch.float32
        assert batch[name].min() >= -1.0 and batch[name].max() <= 1.0
    assert batch["hand"].min() == -1.0  # black background
    assert isinstance(batch["prompt"][0], str)


def test_two_loader_workers_read_every_sample_exactly_once(shard_dir):
    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    urls = [str(p) for p in shards_of(shard_dir)]
    keys = [k for b in make_loader(urls, stage, 2, train=False, num_workers=2) for k in b["key"]]
    assert sorted(keys) == [f"syn-{i:04d}" for i in range(6)]


def test_broken_samples_are_skipped_and_counted(tmp_path):
    write_shard(
        tmp_path / "bad-000000.tar", [10, 11, 12, 13], broken={11: "corrupt", 13: "missing"}
    )
    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    batches = list(make_loader([str(tmp_path / "bad-000000.tar")], stage, 1, train=False))
    assert [b["key"][0] for b in batches] == ["syn-0010", "syn-0012"]
    assert sum(b["skipped"] for b in batches) == 1  # the trailing broken one has no carrier
    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    loader = make_loader(
        [str(tmp_path / "bad-000000.tar")], stage, 1, train=True, seed=1, batches_per_worker=8
    )
    assert sum(b["skipped"] for b in loader) >= 2


def test_clips_of_another_geometry_give_a_recipe_sized_window(shard_dir):
    """Shards imported under another recipe: every (n // frames)-th frame from the first (the
    official loader's stride), fitted to the recipe's size by its resize mode."""
    from dwm_data.sample import Sample
    from dwm_data.store import read_samples
    from dwm_data.video import decode, fit_size, read_frames

    urls = [str(p) for p in shards_of(shard_dir)]
    batch = next(iter(make_loader(urls, video_decoder(4, 96, 64), 1, train=False)))
    assert batch["video"].shape == (1, 3, 4, 64, 96)
    first = next(s for s in read_samples(shards_of(shard_dir)) if isinstance(s, Sample))
    assert batch["key"][0] == first.key
    expected = read_frames(first.video, [0, 2, 4, 6], 96, 64, "letterbox")
    assert torch.equal(batch["video"][0], to_tensor(expected))
    assert fit_size(WIDTH, HEIGHT, 96, 64, "letterbox") == (85, 64)  # padded at the sides
    assert expected[:, :, :5].max() == 0 and expected[:, :, 10:80].max() > 0
    same = next(iter(make_loader(urls, video_decoder(FRAMES, WIDTH, HEIGHT), 1, train=False)))
    assert torch.equal(same["video"][0], to_tensor(decode(first.video)))


def test_shards_longer_or_larger_than_the_recipe_are_named_in_one_line(shard_dir):
    shards = shards_of(shard_dir)
    assert geometry_note(shards, FRAMES, WIDTH, HEIGHT) is None
    note = geometry_note(shards, 5, 32, 32)
    assert note == (
        f"{shards[0].name} holds clips of 9 frames at 64x48, the recipe wants 5 frames at 32x32: "
        "training on 5 frames one in 1 from the first, fitted to 32x32 on load (re-import the "
        "shards with this recipe to save that work)"
    )
    with pytest.raises(
        DwmDataError,
        match="9 frames at 64x48, the recipe wants 13 frames .*"
        "re-import the shards with this recipe, or train with video.frames of at most 9",
    ):
        geometry_note(shards, 13, WIDTH, HEIGHT)


def test_a_stream_where_nothing_loads_stops_instead_of_spinning(shard_dir):
    stage = video_decoder(13, WIDTH, HEIGHT)  # longer clips than the shards hold
    urls = [str(p) for p in shards_of(shard_dir)]
    loader = make_loader(urls, stage, 1, train=True, seed=0, batches_per_worker=2)
    with pytest.raises(
        DwmDataError,
        match="200 samples in a row could not be loaded; the last: clip has 9 frames, recipe wants 13",
    ):
        next(iter(loader))


@pytest.mark.slow
def test_training_on_shards_of_another_geometry_says_so_before_the_first_step(
    shard_dir, tmp_path, monkeypatch
):
    """The issue's case (official-size shards, tiny recipe), scaled down: one line up front,
    then training on resized windows."""
    monkeypatch.setenv("DWM_MODEL_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(
        "tiny",
        ["video.frames=5", "video.width=32", "video.height=32", *SHORT[:1], "train.max_steps=1"],
    )
    notes: list[str] = []
    result = train(
        shards_of(shard_dir), tmp_path / "run", recipe, progress=False, notify=notes.append
    )
    assert len(notes) == 1 and "holds clips of 9 frames at 64x48" in notes[0]
    assert result.position.step == 1 and result.position.skipped == 0


def test_sample_and_eval_read_the_recipe_a_run_was_trained_with(tmp_path):
    recipe = load_recipe("tiny", ["eval.limit=2", "train.lora_targets=[to_q, to_v]"])
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000002").mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps(recipe.dump()))
    assert run_recipe(run).dump() == recipe.dump()
    again = run_recipe(run / "checkpoints" / "step-000002", ["eval.steps=3"])
    assert again.section("eval", EvalConfig).steps == 3 and again.video == recipe.video
    with pytest.raises(DwmDataError, match="holds no recipe.json .* -r"):
        run_recipe(tmp_path)


def test_uneven_shards_give_every_rank_the_same_number_of_batches(tmp_path, monkeypatch):
    """3 shards on 2 ranks: split_by_node would give 2 vs 1 shards and hang an all-reduce."""
    write_shard(tmp_path / "a-000000.tar", [0, 1, 2])
    write_shard(tmp_path / "a-000001.tar", [3])
    write_shard(tmp_path / "a-000002.tar", [4, 5])
    urls = [str(p) for p in shards_of(tmp_path)]
    seen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        stage = video_decoder(FRAMES, WIDTH, HEIGHT)
        loader = make_loader(urls, stage, 2, train=True, seed=7, batches_per_worker=5)
        seen.append([tuple(b["key"]) for b in loader])
    assert len(seen[0]) == len(seen[1]) == 5
    assert seen[0] != seen[1]  # ranks draw their own shards


def test_training_loader_is_deterministic_per_seed(shard_dir):
    def keys(seed):
        stage = video_decoder(FRAMES, WIDTH, HEIGHT)
        urls = [str(p) for p in shards_of(shard_dir)]
        loader = make_loader(urls, stage, 2, train=True, seed=seed, batches_per_worker=4)
        return [tuple(b["key"]) for b in loader]

    assert keys(3) == keys(3)
    assert keys(3) != keys(4)


@pytest.mark.slow
def test_train_resume_continues_exactly(shard_dir, model_cache, tmp_path):
    recipe = load_recipe("tiny", SHORT)
    run = tmp_path / "run"
    full = train(shards_of(shard_dir), run, recipe, progress=False)
    assert full.position.step == 6 and full.position.samples == 12
    assert all(torch.isfinite(torch.tensor(full.losses)))
    assert [c.name for c in checkpoints(run)] == ["step-000003", "step-000006"]
    for name in (
        "pytorch_lora_weights.safetensors",
        "non_lora_weights.safetensors",
        "optimizer.pt",
        "rng-0.pt",
    ):
        assert (run / "checkpoints" / "step-000003" / name).is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "pytorch_lora_weights.safetensors").is_file()

    resumed_run = tmp_path / "resumed"
    shutil.copytree(run, resumed_run)
    shutil.rmtree(resumed_run / "checkpoints" / "step-000006")
    resumed = train(shards_of(shard_dir), resumed_run, recipe, resume=True, progress=False)
    assert resumed.losses == full.losses[3:]
    steps = [json.loads(line)["step"] for line in (resumed_run / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(DwmDataError, match="--resume"):
        train(shards_of(shard_dir), run, recipe, progress=False)


def test_non_finite_loss_stops_with_step_and_keys(shard_dir, model_cache, tmp_path):
    recipe = load_recipe("tiny", [*SHORT, "train.learning_rate=1e30", "train.warmup_steps=0"])
    with pytest.raises(
        NonFiniteLoss, match=r"loss is nan at step \d+ on rank 0; batch keys: syn-\d{4}"
    ):
        train(shards_of(shard_dir), tmp_path / "run", recipe, progress=False)


def test_frame_counts_not_4k_plus_1_are_refused_before_loading(shard_dir, tmp_path):
    recipe = load_recipe("tiny", ["video.frames=8"])
    with pytest.raises(DwmDataError, match="4k\\+1"):
        train(shards_of(shard_dir), tmp_path / "run", recipe, progress=False)


def test_missing_base_model_folder_is_a_clear_error(shard_dir, tmp_path):
    from dwm_data.errors import MissingAssetError

    recipe = load_recipe("tiny", [f"train.base_model={tmp_path / 'CogVideoX-Fun-V1.1-5b-InP'}"])
    with pytest.raises(MissingAssetError, match="base model"):
        train(shards_of(shard_dir), tmp_path / "run", recipe, progress=False)


@pytest.mark.slow
def test_latent_cache_is_written_once_and_used_by_training(shard_dir, model_cache, tmp_path):
    from safetensors.torch import load

    from dwm_model.base import Base
    from dwm_model.data import CACHE_MEMBER, cache_fingerprint
    from dwm_model.latents import encode_shards

    folder = tmp_path / "shards"
    shutil.copytree(shard_dir, folder)
    recipe = load_recipe("tiny", SHORT)
    result = encode_shards(shards_of(folder), recipe, model_cache)
    assert (result.shards, result.samples, result.skipped, result.reused) == (2, 6, 0, 0)
    again = encode_shards(shards_of(folder), recipe, model_cache)
    assert (again.samples, again.reused) == (0, 2)
    fingerprint = cache_fingerprint(model_cache, FRAMES, WIDTH, HEIGHT, 32)
    cache = cached_shards(shards_of(folder), fingerprint)
    assert cache == [folder / "latents" / p.name for p in shards_of(folder)]
    assert cached_shards(shards_of(folder), {**fingerprint, "frames": 13}) is None
    # another vocabulary gives other prompt embeddings: the cache is not theirs
    other = tmp_path / "other-base"
    shutil.copytree(model_cache, other)
    (other / "tokenizer" / "spiece.model").write_bytes(b"another vocabulary")
    assert cache_fingerprint(other, FRAMES, WIDTH, HEIGHT, 32) != fingerprint

    import webdataset as wds

    first = next(iter(wds.WebDataset(str(cache[0]), shardshuffle=False)))
    tensors = load(first[CACHE_MEMBER])
    assert tensors["video"].shape == (32, 3, HEIGHT // 8, WIDTH // 8)
    assert tensors["prompt_embeds"].shape == (32, 32)
    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    batch = next(iter(make_loader([str(shards_of(folder)[0])], stage, 1, train=False)))
    assert batch["key"][0] == first["__key__"]
    moments = Base(model_cache).encode_moments(batch["video"])[0]
    assert torch.allclose(moments, tensors["video"], atol=1e-5)

    run = train(shards_of(folder), tmp_path / "run", recipe, progress=False)
    assert run.cached and run.position.step == 6


@pytest.mark.slow
def test_tiny_model_learns_from_imported_realworld_shards(shared_data, tmp_path, model_cache):
    """The issue's figure: the tiny model on the official real-world clips, imported with the
    tiny recipe, lowers its loss clearly in 300 steps; resuming at step 200 changes nothing."""
    import statistics

    from dwm_data.build import build
    from dwm_data.store import shard_paths
    from dwm_model.latents import encode_shards

    recipe = load_recipe("tiny")
    source = shared_data("dwm_realworld/realworld_dynamic")
    built = build(
        "import-dwm",
        {"source": str(source), "license": "see LICENSE"},
        recipe,
        tmp_path / "data",
        progress=False,
    )
    assert built.status.samples == 3
    shards = shard_paths(tmp_path / "data")
    encode_shards(shards, recipe, model_cache)
    full = train(shards, tmp_path / "run", recipe, progress=False)
    first, last = statistics.mean(full.losses[:30]), statistics.mean(full.losses[-30:])
    print(f"realworld tiny: loss first 30 steps {first:.4f}, last 30 steps {last:.4f}")
    assert full.cached and len(full.losses) == 300
    assert last < 0.85 * first

    resumed_run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run", resumed_run)
    shutil.rmtree(checkpoints(resumed_run)[-1])
    resumed = train(shards, resumed_run, recipe, resume=True, progress=False)
    assert resumed.losses == full.losses[200:]


def test_hand_and_prompt_dropout_zero_the_hand_and_empty_the_prompt(
    shard_dir, model_cache, tmp_path
):
    recipe = load_recipe("tiny", ["train.hand_dropout=1.0", "train.prompt_dropout=1.0"])
    trainer = Trainer(shards_of(shard_dir), tmp_path, recipe)
    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    batch = next(iter(make_loader([str(shards_of(shard_dir)[0])], stage, 2, train=False)))
    latents = trainer.latents(batch)
    assert latents["hand"].abs().max() == 0 and latents["static"].abs().max() > 0
    empty = trainer.base.encode_prompts([""], 32)[0]
    assert torch.equal(latents["prompt_embeds"][0], empty) and torch.equal(
        latents["prompt_embeds"][1], empty
    )
    assert latents["video"].shape == (2, 3, 16, HEIGHT // 8, WIDTH // 8)


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_losses(shard_dir, model_cache, tmp_path):
    settings = ["train.max_steps=3", "train.checkpoint_every=3", "train.warmup_steps=1"]
    plain = train(
        shards_of(shard_dir), tmp_path / "a", load_recipe("tiny", settings), progress=False
    )
    recipe = load_recipe("tiny", [*settings, "train.gradient_checkpointing=true"])
    trainer = Trainer(shards_of(shard_dir), tmp_path / "b", recipe)
    assert trainer.transformer.is_gradient_checkpointing
    again = trainer.run(progress=False)
    assert again.losses == pytest.approx(plain.losses, rel=1e-5)


def test_prefetch_keeps_order_raises_loader_errors_and_ends_with_its_consumer():
    import threading
    import time

    from dwm_model.data import prefetch

    assert list(prefetch(iter(range(10)))) == list(range(10))

    def broken():
        yield 1
        raise ValueError("bad shard")

    stream = prefetch(broken())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad shard"):
        next(stream)
    stream = prefetch(iter(range(1000)), depth=1)
    next(stream)
    stream.close()
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name == "dwm-prefetch"]


@pytest.mark.slow
def test_official_size_shards_train_under_the_tiny_recipe(shared_data, tmp_path, model_cache):
    """The issue's case: the official clips imported with the dwm recipe (49 frames, 720x480),
    trained with -r tiny (9 frames, 64x48): one line up front, then steps on every fifth frame
    letterboxed to 64x48, nothing skipped."""
    from PIL import Image

    from dwm_data.build import build
    from dwm_data.store import shard_paths
    from dwm_data.video import decode

    source = shared_data("dwm_realworld/realworld_dynamic")
    options = {"source": str(source), "license": "see LICENSE"}
    build("import-dwm", options, load_recipe("dwm"), tmp_path / "data", progress=False)
    shards = shard_paths(tmp_path / "data")
    recipe = load_recipe("tiny", ["train.max_steps=2", "train.checkpoint_every=2"])
    notes: list[str] = []
    result = train(shards, tmp_path / "run", recipe, progress=False, notify=notes.append)
    assert len(notes) == 1 and notes[0].endswith(
        "holds clips of 49 frames at 720x480, the recipe wants 9 frames at 64x48: training on "
        "9 frames one in 5 from the first, fitted to 64x48 on load (re-import the shards with "
        "this recipe to save that work)"
    )
    assert result.position.step == 2 and result.position.skipped == 0

    stage = video_decoder(FRAMES, WIDTH, HEIGHT)
    batch = next(iter(make_loader([str(shards[0])], stage, 1, train=False)))
    stem = batch["key"][0][-5:]  # the official file's stem, e.g. dwm-00013
    original = decode(source / "videos" / f"{stem}.mp4")
    loaded = ((batch["video"][0, :, 1].permute(1, 2, 0) + 1) * 127.5).numpy()
    fitted = np.asarray(Image.fromarray(original[5]).resize((64, 43), Image.Resampling.BILINEAR))
    assert loaded[:2].max() < 1 and loaded[45:].max() < 1  # letterbox bars, 43 rows of picture
    assert np.abs(loaded[2:45] - fitted).mean() < 8
