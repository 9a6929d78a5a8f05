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
from dwm_model.wan import (
    CLIP_FILE,
    IMAGE_TOKENS,
    LORA_FILE,
    LORA_TARGETS,
    NON_LORA_FILE,
    T5_FILE,
    VAE_FILE,
)


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
        image_dim=32, added_kv_proj_dim=32,
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
        # as the official inference calls the InP model: the text zero-padded to its 512
        # positions, zeroed CLIP features (no clip_image) for the i2v branch
        padded = torch.nn.functional.pad(text, (0, 0, 0, 512 - 32))
        clip = torch.zeros(2, IMAGE_TOKENS, 32)
        expected = plain(
            hidden_states=inp, timestep=t, encoder_hidden_states=padded,
            encoder_hidden_states_image=clip,
        ).sample  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


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
    # an official file written by hand: every Linear, as VideoX-Fun's network
    g = torch.Generator().manual_seed(3)
    file = {}
    for module in adapted:
        layer = model.get_submodule(module).base_layer
        name = official[module]
        file[f"{name}.lora_down.weight"] = torch.randn(4, layer.in_features, generator=g) / 10
        file[f"{name}.lora_up.weight"] = torch.randn(layer.out_features, 4, generator=g) / 10
        file[f"{name}.alpha"] = torch.tensor(8.0)
    # 2 blocks x (q k v o x 2, k_img v_img, ffn x 2), time/text embedders, head, img_emb x 2
    assert len(adapted) == 2 * 12 + 6 + 2
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
    recipe = load_recipe("tiny-wan", [*steps, "train.learning_rate=0.005"])
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
    # dwm-data sample with UniPC and a CLIP image; a file that is no image is one line
    from PIL import Image
    from typer.testing import CliRunner

    from cli.main import app

    Image.new("RGB", (80, 60), (200, 40, 10)).save(tmp_path / "clip.png")
    (tmp_path / "bad.png").write_text("not an image")
    base = ["sample", tmp_path / "run", tmp_path / "s.mp4", "--shards", shards[0], "--key"]
    base += ["syn-0000", "--steps", "2", "--set", "sample.sampler=unipc", "--clip-image"]
    runner = CliRunner()
    result = runner.invoke(app, [str(a) for a in [*base, tmp_path / "clip.png"]])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.mp4").is_file()
    result = runner.invoke(app, [str(a) for a in [*base, tmp_path / "bad.png"]])
    assert "not a readable image" in str(result.exception)  # main() prints it, exit 2


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


def _wan_clip_penultimate(state: dict, pixels: torch.Tensor, heads: int = 16) -> torch.Tensor:
    """Wan's open-clip ViT (`visual.transformer[:-1]`, VideoX-Fun `CLIPModel.forward`) run on
    the file's own tensors with plain torch ops: packed qkv, pre-norm blocks, exact GELU."""
    from torch.nn import functional as F

    v = {k.removeprefix("visual."): t.float() for k, t in state.items() if k.startswith("visual.")}
    width, _, patch, _ = v["patch_embedding.weight"].shape
    x = F.conv2d(pixels, v["patch_embedding.weight"], stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([v["cls_embedding"].expand(len(x), -1, -1), x], dim=1) + v["pos_embedding"]

    def norm(x, name):
        return F.layer_norm(x, (width,), v[f"{name}.weight"], v[f"{name}.bias"], 1e-5)

    x = norm(x, "pre_norm")
    layers = len({k.split(".")[1] for k in v if k.startswith("transformer.")})
    for i in range(layers - 1):
        p = f"transformer.{i}."
        batch, length, _ = x.shape
        qkv = F.linear(norm(x, p + "norm1"), v[p + "attn.to_qkv.weight"], v[p + "attn.to_qkv.bias"])  # fmt: skip
        q, k, value = (u.transpose(1, 2) for u in qkv.view(batch, length, 3, heads, -1).unbind(2))
        attended = F.scaled_dot_product_attention(q, k, value).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attended, v[p + "attn.proj.weight"], v[p + "attn.proj.bias"])
        hidden = F.gelu(F.linear(norm(x, p + "norm2"), v[p + "mlp.0.weight"], v[p + "mlp.0.bias"]))  # fmt: skip
        x = x + F.linear(hidden, v[p + "mlp.2.weight"], v[p + "mlp.2.bias"])
    return x


def test_clip_image_condition_is_wans_clip_and_reaches_the_i2v_branch(wan_base, tmp_path):
    import shutil

    import numpy as np
    from torch.nn.functional import interpolate

    from dwm_data.errors import MissingAssetError

    base = open_backbone(wan_base)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    features = base.encode_image(image)
    assert features.shape == (1, IMAGE_TOKENS, 32)  # 224 px / patch 14 + class token, as released
    # VideoX-Fun's preprocessing: [-1, 1], bicubic to 224 x 224, CLIP mean/std
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    x = interpolate(x, size=(224, 224), mode="bicubic", align_corners=False) * 0.5 + 0.5
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    state = torch.load(wan_base / CLIP_FILE, weights_only=True)
    reference = _wan_clip_penultimate(state, (x - mean) / std)
    torch.testing.assert_close(features, reference, rtol=0, atol=1e-5)

    model = base.world_transformer(16).eval()
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(1, 16, 3, HEIGHT // 8, WIDTH // 8, generator=g) for _ in range(3)]
    text, t = torch.randn(1, 32, 32, generator=g), torch.tensor([500.0])
    with torch.no_grad():
        zeroed = base.predict(model, *x, text, t)
        with_image = base.predict(model, *x, text, t, image=features)
    assert (with_image - zeroed).abs().max() > 1e-3  # the image tokens are attended

    # a release folder without the image encoder: no CLIP image, zeroed features still work
    bare = tmp_path / "no-clip"
    shutil.copytree(wan_base, bare, ignore=shutil.ignore_patterns(CLIP_FILE))
    bare_base = open_backbone(bare)
    with pytest.raises(MissingAssetError, match=CLIP_FILE) as error:
        bare_base.encode_image(image)
    assert "\n" not in str(error.value)
    with torch.no_grad():
        torch.testing.assert_close(bare_base.predict(model, *x, text, t), zeroed)


def test_a_wan_model_without_the_image_branch_gets_no_image_tokens(wan_base, tmp_path):
    """An InP release without img_emb / k_img / v_img (as VideoX-Fun builds Wan2.2-Fun): the
    model has no image branch, so nothing is attended but the text."""
    import shutil

    from safetensors.torch import load_file, save_file

    from dwm_data.errors import DwmDataError

    folder = tmp_path / "no-image-branch"
    shutil.copytree(wan_base, folder, ignore=shutil.ignore_patterns(CLIP_FILE))
    weights = folder / "diffusion_pytorch_model.safetensors"
    image = ("img_emb.", ".k_img.", ".v_img.", ".norm_k_img.")
    kept = {k: v for k, v in load_file(str(weights)).items() if not any(p in k for p in image)}
    save_file(kept, str(weights))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "t2v"}))
    base = open_backbone(folder)
    model = base.world_transformer(16).eval()
    assert model.condition_embedder.image_embedder is None
    assert model.blocks[0].attn2.add_k_proj is None
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(1, 16, 3, 6, 8, generator=g) for _ in range(3)]
    text, t = torch.randn(1, 32, 32, generator=g), torch.tensor([500.0])
    with torch.no_grad():
        out = base.predict(model, *x, text, t)
    assert out.shape == x[0].shape and torch.isfinite(out).all()
    with pytest.raises(DwmDataError, match="no image condition"):
        base.predict(model, *x, text, t, image=torch.zeros(1, IMAGE_TOKENS, 32))


def test_wan_samplers_euler_by_default_unipc_on_request_each_deterministic(wan_base):
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from dwm_data.errors import DwmDataError

    base = open_backbone(wan_base)
    euler, unipc = base.sampler(), base.sampler("unipc")
    assert isinstance(euler, FlowMatchEulerDiscreteScheduler) and euler.config.shift == 5.0
    assert isinstance(unipc, UniPCMultistepScheduler)
    assert unipc.config.prediction_type == "flow_prediction" and unipc.config.use_flow_sigmas
    assert unipc.config.flow_shift == 5.0
    with pytest.raises(DwmDataError, match="unipc"):
        base.sampler("ddim")
    model = base.world_transformer(16).eval()
    g = torch.Generator().manual_seed(0)
    static, hand = (torch.randn(1, 16, 3, 6, 8, generator=g) for _ in "ab")
    text = torch.randn(1, 32, 32, generator=g)

    def guided(latents, t):
        return base.predict(model, latents, static, hand, text, t.expand(1))

    def sample(name: str, seed: int):
        noise = torch.randn(static.shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return base.denoise(noise, 3, guided, name)

    runs = {name: [sample(name, seed) for seed in (7, 7, 8)] for name in ("", "unipc")}
    for first, again, other in runs.values():
        assert torch.equal(first, again) and not torch.equal(first, other)
    assert (runs[""][0] - runs["unipc"][0]).abs().max() > 1e-4


@pytest.mark.slow
def test_wan_world_model_samples_with_unipc_and_a_clip_image(wan_base):
    import numpy as np

    from dwm_model.generate import WorldModel

    model = WorldModel(wan_base)
    prompts, encode = [], model.base.encode_prompts
    model.base.encode_prompts = lambda texts, length: prompts.append(texts) or encode(texts, length)
    rng = np.random.default_rng(1)
    static, hand = (rng.integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in "ab")
    plain = model.generate(static, hand, "push", steps=2, seed=7, sampler="unipc")
    with_image = model.generate(
        static, hand, "push", steps=2, seed=7, sampler="unipc", clip_image=static[0]
    )
    assert plain.shape == with_image.shape == static.shape
    assert prompts[0] == ["bad detailed", "push"]  # the official Wan negative prompt
    assert not np.array_equal(plain, with_image)


def test_dwm_wan_recipe_has_the_official_wan_settings():
    """snuvclab/dwm dwm_wan_14b_lora.yaml and inference.py defaults; tiny-wan shares its LoRA."""
    from dwm_model.config import SampleConfig, TrainConfig

    tiny = load_recipe("tiny-wan").section("train", TrainConfig)
    assert tiny.base_model == "tiny-wan" and tiny.lora_targets == LORA_TARGETS
    recipe = load_recipe("dwm-wan")
    train, sample = recipe.section("train", TrainConfig), recipe.section("sample", SampleConfig)
    video = recipe.video
    assert (video.frames, video.width, video.height, video.rate) == (49, 720, 480, 8)
    assert train.lora_targets == LORA_TARGETS and train.trainable_patterns == ("patch_embedding",)
    assert (train.lora_rank, train.lora_alpha, train.learning_rate) == (64, 64, 1e-4)
    assert (train.max_steps, train.batch_size, train.max_text_length) == (10000, 1, 512)
    assert (sample.steps, sample.guidance, sample.seed, sample.sampler) == (50, 6.0, 42, "euler")


def _wan_inputs(seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(1, 16, 3, HEIGHT // 8, WIDTH // 8, generator=g) for _ in range(3)]
    return [*x, torch.randn(1, 32, 32, generator=g), torch.tensor([500.0])]


def test_wan_lora_is_an_identity_at_init_and_trains_only_adapter_and_patch_embedding(wan_base):
    base = open_backbone(wan_base)
    model = base.world_transformer(16).eval()
    x = _wan_inputs()
    with torch.no_grad():
        before = base.predict(model, *x)
    params = base.add_lora(model, 4, 8, LORA_TARGETS, ("patch_embedding",))
    with torch.no_grad():
        after = base.predict(model, *x)
    assert torch.equal(before, after)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in names if "lora" not in n} == {"patch_embedding.weight", "patch_embedding.bias"}  # fmt: skip
    assert sum(p.numel() for p in params) == sum(
        p.numel() for n, p in model.named_parameters() if n in names
    )


@pytest.mark.slow
def test_wan_weights_reload_in_a_fresh_process_and_reproduce_outputs(wan_base, tmp_path):
    import subprocess
    import sys

    from dwm_model.generate import WorldModel

    model = WorldModel(wan_base)
    base = model.base
    base.add_lora(model.transformer, 4, 8, LORA_TARGETS, ("patch_embedding",))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.transformer.named_parameters():
            if "lora_B" in name or "patch_embedding" in name:
                param.add_(torch.randn(param.shape, generator=g) / 10)
    model.save_pretrained(tmp_path / "w", {"rank": 4, "alpha": 8, "text_length": 32})
    x = _wan_inputs(1)
    with torch.no_grad():
        expected = base.predict(model.transformer, *x)
        plain = base.predict(base.world_transformer(16).eval(), *x)
    torch.save(x, tmp_path / "inputs.pt")
    script = f"""
import torch
from pathlib import Path
from dwm_model.generate import WorldModel
model = WorldModel.from_pretrained(Path({str(tmp_path / "w")!r}))
x = torch.load({str(tmp_path / "inputs.pt")!r})
with torch.no_grad():
    torch.save(model.base.predict(model.transformer, *x), {str(tmp_path / "out.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    got = torch.load(tmp_path / "out.pt")
    assert not torch.allclose(expected, plain, atol=1e-3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_tiny_wan_learns_from_imported_realworld_shards_and_resumes_exactly(
    shared_data, tmp_path, wan_cache
):
    """The official real-world clips imported with the tiny recipe: the tiny Wan lowers its
    loss; resuming from the step-100 checkpoint reproduces steps 101-200 exactly."""
    import shutil

    from dwm_data.build import build
    from dwm_data.store import shard_paths
    from dwm_model.latents import encode_shards
    from dwm_model.train import train

    recipe = load_recipe("tiny-wan", ["train.max_steps=200"])
    built = build(
        "import-dwm",
        {"source": str(shared_data("dwm_realworld/realworld_dynamic")), "license": "see LICENSE"},
        recipe,
        tmp_path / "data",
        progress=False,
    )
    assert built.status.samples == 3
    shards = shard_paths(tmp_path / "data")
    encode_shards(shards, recipe, wan_cache)
    full = train(shards, tmp_path / "run", recipe, progress=False)
    first, last = statistics.mean(full.losses[:30]), statistics.mean(full.losses[-30:])
    print(f"realworld tiny Wan: loss first 30 steps {first:.4f}, last 30 steps {last:.4f}")
    assert full.cached and len(full.losses) == 200
    assert last < 0.85 * first
    resumed_run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run", resumed_run)
    shutil.rmtree(resumed_run / "checkpoints" / "step-000200")
    resumed = train(shards, resumed_run, recipe, resume=True, progress=False)
    assert resumed.losses == full.losses[100:]


def test_demo_and_bench_take_the_wan_base_by_its_tiny_recipe(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from dwm_model.bench import RECIPES

    assert RECIPES == {"cogvideox": "tiny", "wan": "tiny-wan"}
    runner = CliRunner()
    cases = {
        ("bench", "io", "--base", "wan"): "--base applies to bench train only",
        ("bench", "train", "--base", "sd3", "--quick"): "unknown base 'sd3'",
        ("demo", "--base", "wan", "-r", "dwm", "-o", str(tmp_path)): "without --recipe",
    }
    for args, message in cases.items():
        result = runner.invoke(app, list(args))
        assert message in str(result.exception), args
    assert not any(tmp_path.iterdir())  # refused before anything is written
