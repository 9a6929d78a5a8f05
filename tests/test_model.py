"""The widened CogVideoX-Fun transformer, its LoRA adapter and the saved weights' layout.

Also home of the fixtures the other model tests import: a tiny random base model in the released
folder layout and WebDataset shards of synthetic triplets in the sample contract's member names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.fixtures.dwm_layout import synthetic_triplet
from dwm_data.recipe import load_recipe
from dwm_data.sample import make_sample
from dwm_model.base import Base
from dwm_model.config import check_geometry
from dwm_model.model import (
    NON_LORA_FILE,
    adapter_settings,
    add_lora,
    load_world_model,
    predict,
    rotary_embedding,
    save_weights,
)
from dwm_model.tiny import create_tiny_base

FRAMES, WIDTH, HEIGHT = 9, 64, 48
PROMPTS = ["push the box to the right", "pick up the red cup", "", "open the drawer"]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return create_tiny_base(tmp_path_factory.mktemp("tiny-base"), WIDTH, HEIGHT, FRAMES)


def write_shard(path: Path, seeds: list[int], broken: dict[int, str] | None = None) -> list[str]:
    """A shard of synthetic triplets; `broken` maps a seed to "corrupt" or "missing" (hand.mp4)."""
    import webdataset as wds

    codecs = load_recipe("tiny").codecs.to_codecs()
    keys = []
    with wds.TarWriter(str(path)) as writer:
        for seed in seeds:
            frames = synthetic_triplet(FRAMES, WIDTH, HEIGHT, seed=seed)
            meta = {"source": {"name": "synthetic", "seed": seed, "license": "CC0-1.0"}}
            sample = make_sample(f"syn-{seed:04d}", frames, 8, codecs, PROMPTS[seed % 4], meta)
            members = sample.to_wds()
            damage = (broken or {}).get(seed)
            if damage == "corrupt":
                members["video.mp4"] = members["video.mp4"][:300]
            elif damage == "missing":
                del members["hand.mp4"]
            writer.write(members)
            keys.append(sample.key)
    return keys


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    write_shard(folder / "syn-000000.tar", [0, 1, 2])
    write_shard(folder / "syn-000001.tar", [3, 4, 5])
    return folder


def tiny_inputs(transformer, batch: int = 2, seed: int = 0):
    """Random latents, conditions, prompt embeddings and timesteps for the tiny transformer."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3, 16, HEIGHT // 8, WIDTH // 8)
    return {
        "noisy": torch.randn(shape, generator=g),
        "static": torch.randn(shape, generator=g),
        "hand": torch.randn(shape, generator=g),
        "prompt_embeds": torch.randn(batch, 32, transformer.config.text_embed_dim, generator=g),
        "timesteps": torch.tensor([10, 900][:batch]),
    }


def test_widened_model_equals_base_model_at_init(tiny_base):
    base = Base(tiny_base)
    original = base.load_transformer().eval()
    widened = load_world_model(base).eval()
    assert (original.config.in_channels, widened.config.in_channels) == (33, 49)
    assert widened.config.original_in_channels == 33 and widened.config.condition_channels == 16
    x = tiny_inputs(widened)
    with torch.no_grad():
        rope = rotary_embedding(original, 3, HEIGHT // 8, WIDTH // 8, "cpu")
        mask = torch.full_like(x["noisy"][:, :, :1], base.scaling_factor)
        inp = torch.cat([x["noisy"], mask, x["static"]], dim=2)
        expected = original(inp, x["prompt_embeds"], x["timesteps"], image_rotary_emb=rope)[0]
        got = predict(widened, scaling=base.scaling_factor, **x)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert widened.patch_embed.proj.weight[:, 33:].abs().max() == 0


def test_lora_is_an_identity_at_init_and_trains_only_adapter_and_patch_embed(tiny_base):
    base = Base(tiny_base)
    model = load_world_model(base).eval()
    x = tiny_inputs(model)
    with torch.no_grad():
        before = predict(model, scaling=0.7, **x)
    params = add_lora(model, 8, 8, ("to_k", "to_q", "to_v", "to_out.0"), ("patch_embed.proj",))
    with torch.no_grad():
        after = predict(model, scaling=0.7, **x)
    assert torch.equal(before, after)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in names if "lora" not in n} == {
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
    }
    lora_layers = {n.rsplit(".lora_", 1)[0] for n in names if "lora" in n}
    assert len(lora_layers) == 2 * 4  # 2 blocks x to_q, to_k, to_v, to_out.0
    assert all(layer.split(".")[-1] in ("to_q", "to_k", "to_v", "0") for layer in lora_layers)
    assert sum(p.numel() for p in params) == sum(
        p.numel() for n, p in model.named_parameters() if n in names
    )


def test_rotary_embedding_is_passed_and_changes_the_output(tiny_base):
    model = load_world_model(Base(tiny_base)).eval()
    rope = rotary_embedding(model, 3, HEIGHT // 8, WIDTH // 8, "cpu")
    assert rope is not None and rope[0].shape == (3 * 3 * 4, 32)
    x = tiny_inputs(model)
    with torch.no_grad():
        with_rope = predict(model, scaling=0.7, **x)
        mask = torch.full_like(x["noisy"][:, :, :1], 0.7)
        inp = torch.cat([x["noisy"], mask, x["static"], x["hand"]], dim=2)
        without = model(inp, x["prompt_embeds"], x["timesteps"])[0]
    assert (with_rope - without).abs().max() > 1e-3


def test_missing_base_folder_is_one_clear_line(tmp_path):
    with pytest.raises(MissingAssetError) as info:
        Base(tmp_path / "CogVideoX-Fun-V1.1-5b-InP")
    message = str(info.value)
    assert "transformer/config.json" in message and "\n" not in message
    assert "CogVideoX-Fun-V1.1-5b-InP" in message


def test_a_non_inp_transformer_is_refused(tiny_base, tmp_path):
    import shutil

    folder = tmp_path / "base"
    shutil.copytree(tiny_base, folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    config["in_channels"] = 16
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(DwmDataError, match="expected an InP model"):
        load_world_model(Base(folder))


@pytest.mark.parametrize(
    ("frames", "width", "height", "message"),
    [(8, 64, 48, "not 4k\\+1"), (49, 720, 472, "multiple of 16"), (9, 72, 48, "multiple of 16")],
)
def test_geometry_the_model_would_mangle_is_refused(frames, width, height, message):
    with pytest.raises(DwmDataError, match=message):
        check_geometry(frames, width, height)


def test_official_geometry_is_accepted():
    check_geometry(49, 720, 480)
    check_geometry(9, 64, 48)


def trained_like(tiny_base, alpha: int = 8):
    """A widened model with adapter whose LoRA B and patch embedding are no longer trivial."""
    model = load_world_model(Base(tiny_base)).eval()
    params = add_lora(model, 4, alpha, ("to_k", "to_q", "to_v", "to_out.0"), ("patch_embed.proj",))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_saved_weights_follow_the_official_key_layout(tiny_base, tmp_path):
    """The official trainer's files: exactly the unprefixed keys of `get_peft_model_state_dict`
    and the full patch embedding under its parameter names."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    model = trained_like(tiny_base)
    save_weights(model, tmp_path, {"rank": 4, "alpha": 8, "base_model": str(tiny_base)})
    lora = load_file(str(tmp_path / "pytorch_lora_weights.safetensors"))
    peft_state = get_peft_model_state_dict(model)
    assert set(lora) == set(peft_state)
    assert all(torch.equal(lora[k], peft_state[k]) for k in lora)
    inner = 2 * 32
    assert lora["transformer_blocks.0.attn1.to_q.lora_A.weight"].shape == (4, inner)
    assert lora["transformer_blocks.1.attn1.to_out.0.lora_B.weight"].shape == (inner, 4)
    assert len(lora) == 2 * 4 * 2
    non_lora = load_file(str(tmp_path / NON_LORA_FILE))
    assert set(non_lora) == {"patch_embed.proj.weight", "patch_embed.proj.bias"}
    assert non_lora["patch_embed.proj.weight"].shape == (inner, 49, 2, 2)
    # The official release has no adapter record: rank from the shapes, alpha = rank.
    (tmp_path / "dwm_adapter.json").unlink()
    assert adapter_settings(tmp_path) == {"rank": 4, "alpha": 4, "text_length": 226}


@pytest.mark.slow
def test_saved_weights_reload_in_a_fresh_process_and_reproduce_outputs(tiny_base, tmp_path):
    model = trained_like(tiny_base)
    save_weights(model, tmp_path / "w", {"rank": 4, "alpha": 8, "base_model": str(tiny_base)})
    x = tiny_inputs(model)
    with torch.no_grad():
        expected = predict(model, scaling=0.7, **x)
    torch.save(x, tmp_path / "inputs.pt")
    script = f"""
import torch
from pathlib import Path
from dwm_model.generate import WorldModel
from dwm_model.model import predict
model = WorldModel.from_weights(Path({str(tmp_path / "w")!r}))
x = torch.load({str(tmp_path / "inputs.pt")!r})
with torch.no_grad():
    torch.save(predict(model.transformer, scaling=0.7, **x), {str(tmp_path / "out.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    got = torch.load(tmp_path / "out.pt")
    assert not torch.allclose(expected, predict_base(tiny_base, x), atol=1e-3)
    assert torch.allclose(got, expected, atol=1e-6)


def test_weights_without_our_record_load_as_the_official_release(tiny_base, tmp_path):
    """The released files carry no adapter record: rank from the shapes, alpha = rank."""
    from dwm_model.generate import WorldModel

    model = trained_like(tiny_base, alpha=4)
    save_weights(model, tmp_path, {"rank": 4, "alpha": 4})
    (tmp_path / "dwm_adapter.json").unlink()
    x = tiny_inputs(model)
    loaded = WorldModel(tiny_base, tmp_path)
    with torch.no_grad():
        expected = predict(model, scaling=0.7, **x)
        got = predict(loaded.transformer, scaling=0.7, **x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert loaded.text_length == 226


def predict_base(tiny_base, x):
    model = load_world_model(Base(tiny_base)).eval()
    with torch.no_grad():
        return predict(model, scaling=0.7, **x)


def test_synthetic_shard_fixture_is_in_the_contract(shard_dir):
    from dwm_data.store import read_samples

    samples = list(read_samples(shard_dir))
    assert len(samples) == 6 and all(s.meta["frames"] == FRAMES for s in samples)
    assert np.unique([s.prompt for s in samples]).size == 4
