"""Wan2.1-Fun-InP behind the backbone seam, on the tiny random Wan base in the release's layout."""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from test_model import FRAMES, HEIGHT, WIDTH, shard_dir, write_shard  # noqa: F401

from dwm_data.recipe import load_recipe
from dwm_model.backbone import base_kind, open_backbone
from dwm_model.tiny_wan import RELEASE_CONFIG, create_tiny_wan_base
from dwm_model.wan import LORA_FILE, LORA_TARGETS, NON_LORA_FILE, T5_FILE, VAE_FILE

# The tiny recipe on the tiny Wan base, with the official Wan LoRA targets and unfrozen layer.
WAN = [
    "train.base_model=tiny-wan",
    f"train.lora_targets={json.dumps(list(LORA_TARGETS))}",
    "train.trainable_patterns=[patch_embedding]",
]


@pytest.fixture(scope="session")
def wan_base(tmp_path_factory) -> Path:
    return create_tiny_wan_base(tmp_path_factory.mktemp("tiny-wan"), WIDTH, HEIGHT, FRAMES)


@pytest.fixture
def wan_cache(tmp_path_factory, monkeypatch, wan_base):
    """$DWM_MODEL_CACHE holding the folder `base_model: tiny-wan` resolves to."""
    import shutil

    root = tmp_path_factory.getbasetemp() / "wan-cache"
    target = root / f"tiny-wan-{WIDTH}x{HEIGHT}x{FRAMES}"
    if not target.exists():
        shutil.copytree(wan_base, target)
    monkeypatch.setenv("DWM_MODEL_CACHE", str(root))
    return target


def test_tiny_wan_folder_is_the_release_layout_and_loads_through_diffusers_converters(wan_base):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from diffusers.loaders.single_file_utils import (
        convert_wan_transformer_to_diffusers,
        convert_wan_vae_to_diffusers,
    )
    from safetensors.torch import load_file

    assert base_kind(wan_base) == "wan"
    config = json.loads((wan_base / "config.json").read_text())
    assert config == RELEASE_CONFIG and config["in_dim"] == 36 and config["model_type"] == "i2v"
    assert not (wan_base / "transformer").exists() and not (wan_base / "scheduler").exists()
    weights = load_file(str(wan_base / "diffusion_pytorch_model.safetensors"))
    for key in ("blocks.0.self_attn.q.weight", "blocks.1.cross_attn.k_img.weight",
                "blocks.0.norm3.weight", "head.head.weight", "img_emb.proj.1.weight",
                "patch_embedding.weight", "text_embedding.0.weight"):  # fmt: skip
        assert key in weights, key
    # diffusers' own converter takes the file into its class, image branch included
    full = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=64, num_layers=2,
        image_dim=1280, added_kv_proj_dim=32,
    )  # fmt: skip
    full.load_state_dict(convert_wan_transformer_to_diffusers(dict(weights)), strict=True)
    vae = torch.load(wan_base / VAE_FILE, weights_only=True)
    assert "encoder.conv1.weight" in vae and "decoder.upsamples.4.shortcut.weight" in vae
    AutoencoderKLWan(base_dim=8).load_state_dict(convert_wan_vae_to_diffusers(vae), strict=True)
    t5 = torch.load(wan_base / T5_FILE, weights_only=True)
    assert {v.dtype for v in t5.values()} == {torch.bfloat16}
    assert "blocks.1.pos_embedding.embedding.weight" in t5  # UMT5: a bias table per layer
    assert (wan_base / "google" / "umt5-xxl" / "spiece.model").is_file()


def test_widened_wan_transformer_starts_as_the_base_and_takes_52_channels(wan_base):
    base = open_backbone(wan_base)
    widened = base.world_transformer(16).eval()
    plain = base.load_transformer().eval()
    assert widened.patch_embedding.in_channels == 52 and widened.config.in_channels == 52
    g = torch.Generator().manual_seed(0)
    shape = (2, 16, 3, HEIGHT // 8, WIDTH // 8)
    noisy, static, hand = (torch.randn(shape, generator=g) for _ in range(3))
    text = torch.randn(2, 32, 32, generator=g)
    t = torch.tensor([100.0, 900.0])
    with torch.no_grad():
        got = base.predict(widened, noisy, static, hand, text, t)
        inp = torch.cat([noisy, torch.ones_like(noisy[:, :4]), static], dim=1)  # 36, mask unscaled
        expected = plain(hidden_states=inp, timestep=t, encoder_hidden_states=text).sample
    torch.testing.assert_close(got, expected)


def test_wan_training_example_is_diffusers_flow_matching_with_shift_5(wan_base):
    base = open_backbone(wan_base)
    z0 = torch.randn(3, 16, 3, 6, 8)
    noisy, t, target = base.training_example(z0, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    torch.rand(3, generator=g)
    noise = torch.randn(z0.shape, generator=g)
    scheduler = base.scheduler
    assert scheduler.config.shift == 5.0
    torch.testing.assert_close(noisy, scheduler.scale_noise(z0, t, noise))
    torch.testing.assert_close(target, noise - z0)


def test_wan_prompt_embeddings_are_zero_past_each_prompt(wan_base):
    base = open_backbone(wan_base)
    embeds = base.encode_prompts(["pick up the red cup", ""], 32)
    lengths = [len(base.tokenizer.ids(p)) + 1 for p in ("pick up the red cup", "")]
    assert embeds.shape == (2, 32, 32)
    for row, length in zip(embeds, lengths, strict=True):
        assert row[:length].abs().sum(-1).min() > 0 and row[length:].abs().sum() == 0


def _official_names(wan_base: Path) -> dict[str, str]:
    """diffusers module name -> the official LoRA name, derived from the release file's own keys
    through diffusers' converter (not through our naming code)."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    names = {}
    for key in load_file(str(wan_base / "diffusion_pytorch_model.safetensors")):
        if key.endswith(".weight"):
            (new,) = convert_wan_transformer_to_diffusers({key: torch.zeros(1)})
            names[new.removesuffix(".weight")] = "lora_unet__" + key.removesuffix(".weight").replace(".", "_")  # fmt: skip
    return names


def test_wan_lora_files_in_the_official_layout_load_both_ways(wan_base, tmp_path):
    from dwm_model.generate import WorldModel

    base = open_backbone(wan_base)
    model = base.world_transformer(16).eval()
    base.add_lora(model, 4, 8, LORA_TARGETS, ("patch_embedding",))
    adapted = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
    official = _official_names(wan_base)
    # an official file written by hand: every Linear but the image branch, as VideoX-Fun's network
    g = torch.Generator().manual_seed(3)
    file = {}
    for module in adapted:
        layer = model.get_submodule(module).base_layer
        name = official[module]
        file[f"{name}.lora_down.weight"] = torch.randn(4, layer.in_features, generator=g) / 10
        file[f"{name}.lora_up.weight"] = torch.randn(layer.out_features, 4, generator=g) / 10
        file[f"{name}.alpha"] = torch.tensor(8.0)
    assert len(adapted) == 2 * 10 + 6  # 2 blocks x (q k v o x 2 + ffn x 2), embedders, head
    from safetensors.torch import save_file

    release = tmp_path / "release"
    release.mkdir()
    save_file(file, str(release / LORA_FILE))
    patch = {
        "patch_embedding.weight": torch.randn(32, 52, 1, 2, 2, generator=g),
        "patch_embedding.bias": torch.randn(32, generator=g),
    }
    save_file(patch, str(release / NON_LORA_FILE))
    loaded = WorldModel(wan_base, release)  # no record: rank 4, alpha 8 from the file
    assert base.adapter_settings(release) == {"rank": 4, "alpha": 8.0, "text_length": 512}
    params = dict(loaded.transformer.named_parameters())
    for module in adapted:
        torch.testing.assert_close(
            params[f"{module}.lora_A.default.weight"], file[f"{official[module]}.lora_down.weight"]
        )
    torch.testing.assert_close(params["patch_embedding.weight"], patch["patch_embedding.weight"])
    # and back: our files carry exactly the official keys and values
    out = tmp_path / "ours"
    loaded.save_pretrained(out, {"rank": 4, "alpha": 8, "text_length": 32})
    from safetensors.torch import load_file

    written = load_file(str(out / LORA_FILE))
    assert set(written) == set(file)
    for key, value in file.items():
        torch.testing.assert_close(written[key], value)
    assert set(load_file(str(out / NON_LORA_FILE))) == set(patch)
    again = WorldModel.from_pretrained(out)
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(1, 16, 3, 6, 8, generator=g) for _ in range(3)]
    text, t = torch.randn(1, 32, 32, generator=g), torch.tensor([500.0])
    with torch.no_grad():
        one = loaded.base.predict(loaded.transformer, *x, text, t)
        two = again.base.predict(again.transformer, *x, text, t)
    torch.testing.assert_close(one, two)


@pytest.mark.slow
def test_wan_trains_samples_and_evaluates_on_the_tiny_base(wan_cache, shard_dir, tmp_path):
    from dwm_model.evaluate import evaluate
    from dwm_model.generate import WorldModel
    from dwm_model.latents import encode_shards
    from dwm_model.train import train

    steps = ["train.max_steps=40", "train.checkpoint_every=40", "train.warmup_steps=5"]
    recipe = load_recipe("tiny", [*WAN, *steps, "train.learning_rate=0.005"])
    shards = sorted(shard_dir.glob("*.tar"))
    encode_shards(shards, recipe, wan_cache)
    run = train(shards, tmp_path / "run", recipe, progress=False)
    first, last = statistics.mean(run.losses[:10]), statistics.mean(run.losses[-10:])
    print(f"tiny Wan: loss first 10 steps {first:.4f}, last 10 steps {last:.4f}")
    assert run.cached and len(run.losses) == 40 and last < first
    assert (tmp_path / "run" / LORA_FILE).is_file()
    model = WorldModel.from_pretrained(tmp_path / "run")
    assert model.base.kind == "wan" and model.text_length == 32
    shard = tmp_path / "e-000000.tar"
    write_shard(shard, [30])
    metrics = ["eval.steps=2", "eval.metrics=[psnr,ssim]"]
    summary = evaluate([shard], model, load_recipe("tiny", metrics), tmp_path / "eval")
    assert summary["samples"] == 1 and summary["mean"]["psnr"] > 0
    assert (tmp_path / "eval" / "videos" / "syn-0030" / "seed-42.mp4").is_file()


def test_a_wan_folder_missing_a_part_is_named_in_one_line(wan_base, tmp_path):
    import shutil

    from dwm_data.errors import MissingAssetError

    folder = tmp_path / "Wan2.1-Fun-1.3B-InP"
    shutil.copytree(wan_base, folder, ignore=shutil.ignore_patterns(VAE_FILE))
    with pytest.raises(MissingAssetError, match=VAE_FILE) as error:
        open_backbone(folder)
    assert "\n" not in str(error.value) and "Wan2.1-Fun" in str(error.value)


def test_cogvideox_trainable_patterns_on_a_wan_base_are_refused(wan_cache, shard_dir, tmp_path):
    from dwm_data.errors import DwmDataError
    from dwm_model.train import Trainer

    recipe = load_recipe("tiny", ["train.base_model=tiny-wan"])  # patch_embed.proj: CogVideoX's
    with pytest.raises(DwmDataError, match="patch_embedding"):
        Trainer(sorted(shard_dir.glob("*.tar")), tmp_path / "run", recipe)
