"""The base model folder as downloaded: T5 tokenizing from `spiece.model` alone, the scheduler the
file names, the sharded text encoder, and the VAE's tiled encode at the released 480x720 size."""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch
from test_model import tiny_base  # noqa: F401

from dwm_data.errors import DwmDataError
from dwm_model.base import Base, check_base_folder, load_scheduler, resolve_base
from dwm_model.tiny import EXTRA_IDS, PIECES
from dwm_model.tokenizer import T5Tokenizer

PROMPTS = [
    "The left hand gently lifts the mug off the shelf.",
    "Pick up the RED cup, then open the drawer!",
    "",
    "  open   the drawer\tslowly \n",
    "café naïve ☃ 東京 zebra",  # characters the tiny vocabulary lacks: <unk>
    "the hand<extra_id_0> grabs </s> a mug",
    "<extra_id_3>lift the lid",
    "<pad>x<unk>y",
    "\u2581already\u2581marked",
    "a " * 40,  # truncated: </s> stays inside max_length
]
LENGTH = 24


def _edit(path: Path, **changes) -> None:
    """Edit a config file in place (None deletes a key)."""
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def _with_config(tiny_base, tmp_path: Path, part: str, file: str, **changes) -> Path:
    """A copy of one part of the tiny base with its config edited."""
    folder = tmp_path / part
    shutil.copytree(tiny_base / part, folder)
    _edit(folder / file, **changes)
    return folder


def _base_with_config(tiny_base, tmp_path: Path, part: str, file: str, **changes) -> Path:
    """A copy of the whole tiny base with one config edited."""
    folder = tmp_path / "base"
    shutil.copytree(tiny_base, folder)
    _edit(folder / part / file, **changes)
    return folder


def test_the_tiny_base_is_laid_out_as_the_download(tiny_base):
    assert (tiny_base / "tokenizer" / "spiece.model").is_file()
    assert not (tiny_base / "tokenizer" / "tokenizer.json").exists()
    index = json.loads((tiny_base / "text_encoder" / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((tiny_base / "text_encoder" / name).is_file() for name in shards)
    assert (tiny_base / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    transformer = json.loads((tiny_base / "transformer" / "config.json").read_text())
    assert transformer["add_noise_in_inpaint_model"] is True and transformer["in_channels"] == 33
    assert "patch_size_t" not in transformer  # V1.1: a Conv2d patch embedding
    assert json.loads((tiny_base / "vae" / "config.json").read_text())["scaling_factor"] == 0.7


def test_the_latent_scale_is_the_files_and_never_the_class_default(tiny_base, tmp_path):
    assert Base(tiny_base).scaling_factor == 0.7
    folder = _base_with_config(tiny_base, tmp_path, "vae", "config.json", scaling_factor=None)
    with pytest.raises(DwmDataError, match="no scaling_factor"):
        assert Base(folder).scaling_factor


def test_a_folder_without_spiece_model_names_it(tiny_base, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_base, folder)
    (folder / "tokenizer" / "spiece.model").unlink()
    with pytest.raises(DwmDataError, match="tokenizer/spiece.model"):
        check_base_folder(folder)


def test_a_tiny_cache_of_the_earlier_layout_is_rebuilt(tiny_base, tmp_path, monkeypatch):
    stale = tmp_path / "tiny-64x48x9"
    shutil.copytree(tiny_base, stale)
    (stale / "tokenizer" / "spiece.model").unlink()  # the earlier tiny had a tokenizer.json
    (stale / "tokenizer" / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("DWM_MODEL_CACHE", str(tmp_path))
    folder = resolve_base("tiny", 64, 48, 9)
    assert folder == stale and (folder / "tokenizer" / "spiece.model").is_file()
    assert not (folder / "tokenizer" / "tokenizer.json").exists()
    check_base_folder(folder)


@pytest.fixture
def transformers_t5(monkeypatch):
    """transformers' own T5Tokenizer, able to read a spiece.model here: sentencepiece's protobuf
    module needs protobuf>=5 (mediapipe pins <5), transformers' copy of the schema does not."""
    from transformers.utils import sentencepiece_model_pb2_new

    monkeypatch.setitem(
        sys.modules, "sentencepiece.sentencepiece_model_pb2", sentencepiece_model_pb2_new
    )
    from transformers import T5Tokenizer as Reference

    return Reference


@pytest.mark.parametrize("files", ["as released", "spiece.model alone"])
def test_token_ids_equal_transformers_t5_tokenizer(tiny_base, tmp_path, transformers_t5, files):
    """transformers 5's T5Tokenizer (tokenizers-backed) is the legacy tokenizer, which the folder
    asks for; it differs from the slow one of transformers 4 only in adding a second `</s>`
    (see test_t5_conventions). The slow one itself (transformers 4.46.3, installed aside once)
    agreed with ours on 317 texts with special tokens, both `legacy` settings, max_length 8 and 32."""
    folder = tiny_base / "tokenizer"
    if files == "spiece.model alone":
        folder = tmp_path / "tokenizer"
        folder.mkdir()
        shutil.copy(tiny_base / "tokenizer" / "spiece.model", folder)
    reference = transformers_t5.from_pretrained(folder)
    expected = reference(PROMPTS, padding="max_length", max_length=LENGTH, truncation=True)
    got = T5Tokenizer(folder)(PROMPTS, LENGTH)
    assert got == expected.input_ids
    assert any(2 in row[:-1] for row in got)  # the unknown characters did meet <unk>


def test_t5_conventions(tiny_base):
    """What T5Tokenizer documents: `<pad>` 0, `</s>` 1, `<unk>` 2, the sentinels above the pieces
    with `<extra_id_0>` highest; `</s>` once at the end, also when the text already ends in it
    (the slow tokenizer the official code uses does not add it twice)."""
    tokenizer = T5Tokenizer(tiny_base / "tokenizer")
    (row,) = tokenizer(["<extra_id_0> <extra_id_99>"], 6)
    assert row == [PIECES + EXTRA_IDS - 1, PIECES, 1, 0, 0, 0]
    (plain,) = tokenizer(["open the drawer"], LENGTH)
    (ended,) = tokenizer(["open the drawer</s>"], LENGTH)
    assert ended == plain and plain.count(1) == 1
    (long,) = tokenizer(["a " * 40], 8)
    assert len(long) == 8 and long[-1] == 1 and 0 not in long


def test_non_legacy_tokenizing_keeps_the_word_after_a_special_token_unprefixed(tiny_base, tmp_path):
    """`legacy: false` (transformers >= 4.31): no "▁" is invented after a special token; plain
    text tokenizes as in legacy mode."""
    legacy = T5Tokenizer(tiny_base / "tokenizer")
    folder = _with_config(tiny_base, tmp_path, "tokenizer", "tokenizer_config.json", legacy=False)
    modern = T5Tokenizer(folder)
    underline = legacy.sp.piece_to_id("\u2581")
    for text in ("The left hand gently lifts the mug.", "  open   the drawer "):
        assert modern.ids(text) == legacy.ids(text)
    after = legacy.sp.encode("lift the lid")
    assert modern.ids("<extra_id_3>lift the lid")[1:] != after
    assert modern.ids("<extra_id_3> lift the lid")[1:] == after
    assert legacy.ids("<extra_id_3>lift the lid")[1:] == after
    assert underline not in modern.ids("<extra_id_3>x")


def test_prompt_embeddings_through_the_sharded_text_encoder(tiny_base):
    base = Base(tiny_base)
    embeds = base.encode_prompts(["pick up the cup", ""], LENGTH)
    assert embeds.shape == (2, LENGTH, base.text_encoder.config.d_model)
    assert base.text_encoder.config.feed_forward_proj == "gated-gelu"
    assert not torch.allclose(embeds[0], embeds[1])


def test_the_stored_weights_are_the_ones_loaded(tiny_base):
    """The text encoder from its shards; the transformer from its file despite the config key
    its class does not know (`add_noise_in_inpaint_model`)."""
    from safetensors.torch import load_file

    base = Base(tiny_base)
    folder = tiny_base / "text_encoder"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    stored = {}
    for name in set(index["weight_map"].values()):
        stored |= load_file(folder / name)
    loaded = base.text_encoder.state_dict()
    assert stored and all(torch.equal(loaded[key], value) for key, value in stored.items())
    stored = load_file(tiny_base / "transformer" / "diffusion_pytorch_model.safetensors")
    loaded = base.load_transformer().state_dict()
    assert stored.keys() == loaded.keys()
    assert all(torch.equal(loaded[key], value) for key, value in stored.items())


def test_scheduler_matches_the_official_trainers_schedule(tiny_base, tmp_path, caplog):
    """The official trainer draws noise with a DDPMScheduler from the same file: our scheduler must
    give the same alphas_cumprod, also when the file has no snr_shift_scale, where diffusers'
    CogVideoXDDIMScheduler would silently shift by 3."""
    from diffusers import CogVideoXDDIMScheduler, DDPMScheduler

    official = DDPMScheduler.from_pretrained(tiny_base / "scheduler").alphas_cumprod.double()
    ours = load_scheduler(tiny_base / "scheduler")
    assert type(ours) is CogVideoXDDIMScheduler and ours.config.prediction_type == "v_prediction"
    assert torch.allclose(ours.alphas_cumprod, official)

    folder = _with_config(
        tiny_base, tmp_path, "scheduler", "scheduler_config.json", snr_shift_scale=None
    )
    with caplog.at_level(logging.WARNING, logger="dwm_model.base"):
        unshifted = load_scheduler(folder)
    (line,) = [r.getMessage() for r in caplog.records if "snr_shift_scale" in r.getMessage()]
    assert "using 1.0" in line and "3.0" in line and "\n" not in line
    assert torch.allclose(unshifted.alphas_cumprod, official)
    shifted = CogVideoXDDIMScheduler.from_pretrained(folder).alphas_cumprod
    assert not torch.allclose(shifted, official, atol=1e-3)


def test_scheduler_without_prediction_type_is_v_prediction_and_says_so(tiny_base, tmp_path, caplog):
    folder = _with_config(
        tiny_base, tmp_path, "scheduler", "scheduler_config.json", prediction_type=None
    )
    with caplog.at_level(logging.WARNING, logger="dwm_model.base"):
        scheduler = load_scheduler(folder)
    assert scheduler.config.prediction_type == "v_prediction"
    assert any("no prediction_type" in r.getMessage() for r in caplog.records)


def test_scheduler_the_file_names_is_the_one_loaded(tiny_base, tmp_path):
    from diffusers import DDIMScheduler

    folder = _with_config(
        tiny_base, tmp_path, "scheduler", "scheduler_config.json", _class_name="DDIMScheduler"
    )
    assert type(load_scheduler(folder)) is DDIMScheduler


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prediction_type": "epsilon"}, "prediction_type 'epsilon'"),
        ({"_class_name": "AutoencoderKLCogVideoX"}, "names no diffusers scheduler"),
        ({"_class_name": "DDIMScheduler", "snr_shift_scale": 3.0}, "would ignore"),
    ],
)
def test_scheduler_the_model_cannot_use_is_refused(tiny_base, tmp_path, change, message):
    folder = _with_config(tiny_base, tmp_path, "scheduler", "scheduler_config.json", **change)
    with pytest.raises(DwmDataError, match=message):
        load_scheduler(folder)


@pytest.mark.slow
def test_tiled_vae_keeps_the_released_geometry(tiny_base, tmp_path):
    """At the released 480x720 (the VAE's sample size is the frame size, its tiles half of it) the
    tiled encode and decode keep the 60x90 latent grid and stay close to the untiled result."""
    from diffusers import AutoencoderKLCogVideoX

    folder = _base_with_config(
        tiny_base, tmp_path, "vae", "config.json", sample_height=480, sample_width=720
    )
    plain = AutoencoderKLCogVideoX.from_pretrained(folder / "vae").eval()
    tiled = Base(folder).vae
    assert tiled.use_tiling and tiled.use_slicing
    video = torch.rand(1, 3, 1, 480, 720, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = plain.encode(video).latent_dist.mean
        got = tiled.encode(video).latent_dist.mean
        assert got.shape == expected.shape == (1, 16, 1, 60, 90)
        # random weights make seams of about a tenth where the tiles are blended
        assert (got - expected).abs().mean() < 0.2 * expected.abs().mean()
        decoded = tiled.decode(got).sample
        reference = plain.decode(got).sample
    assert decoded.shape == reference.shape == (1, 3, 1, 480, 720)
    assert (decoded - reference).abs().mean() < 0.2 * reference.abs().mean()
