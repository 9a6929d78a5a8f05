"""Our weight files and the official DWM trainer's (snuvclab/dwm, `training/cogvideox/`): each
side loads the other's.

The official calls are reproduced here as that code makes them: saving is
`save_file(get_peft_model_state_dict(transformer))` plus the trainable non-LoRA parameters
(`save_lora_weights`, `collect_non_lora_state_dict`); loading is `load_file`, then
`convert_unet_state_dict_to_peft` and `set_peft_model_state_dict(..., adapter_name="default")`
into a transformer given `add_adapter(LoraConfig(...))` (`load_lora_weights_into_transformer`,
`build_lora_config`), then the non-LoRA tensors copied by name (`load_non_lora_state_dict`).
"""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_model import (  # noqa: F401
    FRAMES,
    HEIGHT,
    WIDTH,
    tiny_base,
    tiny_inputs,
    trained_like,
)

from dwm_data.errors import DwmDataError
from dwm_data.fixtures.dwm_layout import synthetic_triplet
from dwm_model.base import Base
from dwm_model.generate import WorldModel
from dwm_model.model import LORA_FILE, NON_LORA_FILE, load_world_model, predict, save_weights

RANK = 4
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


def official_save(transformer, folder: Path) -> None:
    from peft.utils import get_peft_model_state_dict

    folder.mkdir(parents=True)
    save_file(get_peft_model_state_dict(transformer), str(folder / LORA_FILE))
    non_lora = {
        name: param.detach().cpu()
        for name, param in transformer.named_parameters()
        if param.requires_grad and "lora" not in name.lower()
    }
    save_file(non_lora, str(folder / NON_LORA_FILE))


def official_load(transformer, folder: Path) -> tuple[list[str], list[str]]:
    """(unexpected LoRA keys, loaded non-LoRA names), as the official inference gets them."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    state = convert_unet_state_dict_to_peft(load_file(str(folder / LORA_FILE)))
    result = set_peft_model_state_dict(transformer, state, adapter_name="default")
    model_state = transformer.state_dict()
    loaded = []
    for name, value in load_file(str(folder / NON_LORA_FILE)).items():
        if name in model_state:
            model_state[name].copy_(value.to(model_state[name].dtype))
            loaded.append(name)
    return list(result.unexpected_keys or []), loaded


def official_transformer(tiny_base: Path):
    """The widened model with the adapter the official inference adds for a rank-4 file."""
    from peft import LoraConfig

    transformer = load_world_model(Base(tiny_base)).eval()
    transformer.add_adapter(
        LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=True, target_modules=TARGETS)
    )
    return transformer


@pytest.fixture(scope="module")
def trained(tiny_base):
    """alpha = rank (what a folder without record gets), LoRA B scaled up so that the adapter
    moves the tiny model's video by several grey levels, not a fraction of one."""
    model = trained_like(tiny_base, alpha=RANK)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(10)
    return model


@pytest.fixture(scope="module")
def folders(trained, tiny_base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("interop")
    record = {"rank": RANK, "alpha": RANK, "targets": TARGETS, "base_model": str(tiny_base)}
    save_weights(trained, root / "ours", record | {"text_length": 226})
    official_save(trained, root / "official")
    shutil.copytree(root / "official", root / "zeroed")
    lora = load_file(str(root / "zeroed" / LORA_FILE))
    save_file({k: torch.zeros_like(v) for k, v in lora.items()}, str(root / "zeroed" / LORA_FILE))
    return {name: root / name for name in ("ours", "official", "zeroed")}


def sample(folder: Path, base: Path | None = None) -> np.ndarray:
    frames = synthetic_triplet(FRAMES, WIDTH, HEIGHT, seed=7)
    model = WorldModel.from_weights(folder, base)
    return model.generate(frames["static"], frames["hand"], "open the drawer", steps=2, seed=3)


def test_an_official_folder_samples_the_same_video_as_ours(folders, tiny_base):
    assert not (folders["official"] / "dwm_adapter.json").exists()
    ours = sample(folders["ours"])
    official = sample(folders["official"], tiny_base)
    assert np.array_equal(official, ours)
    zeroed = sample(folders["zeroed"], tiny_base)
    assert np.abs(zeroed.astype(int) - ours).mean() > 2  # the LoRA tensors were loaded


def test_our_folder_loads_through_the_official_load_calls(folders, trained, tiny_base):
    transformer = official_transformer(tiny_base)
    unexpected, loaded = official_load(transformer, folders["ours"])
    assert unexpected == []
    assert sorted(loaded) == ["patch_embed.proj.bias", "patch_embed.proj.weight"]
    x = tiny_inputs(transformer)
    with torch.no_grad():
        expected = predict(trained, scaling=0.7, **x)
        got = predict(transformer, scaling=0.7, **x)
        untrained = predict(official_transformer(tiny_base), scaling=0.7, **x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(untrained, expected, atol=1e-3)


def test_weights_of_earlier_dwm_data_still_load(tiny_base, tmp_path):
    """Earlier versions wrote diffusers' `transformer.`-prefixed keys and an adapter record."""
    from diffusers import CogVideoXPipeline
    from peft.utils import get_peft_model_state_dict

    model = trained_like(tiny_base, alpha=8)
    save_weights(model, tmp_path, {"rank": RANK, "alpha": 8, "text_length": 32})
    CogVideoXPipeline.save_lora_weights(
        tmp_path, transformer_lora_layers=get_peft_model_state_dict(model)
    )
    assert all(k.startswith("transformer.") for k in load_file(str(tmp_path / LORA_FILE)))
    x = tiny_inputs(model)
    loaded = WorldModel(tiny_base, tmp_path)
    with torch.no_grad():
        expected = predict(model, scaling=0.7, **x)
        got = predict(loaded.transformer, scaling=0.7, **x)
    assert torch.allclose(got, expected, atol=1e-6) and loaded.text_length == 32


def test_a_file_that_does_not_fit_the_model_is_refused_in_one_line(folders, tiny_base, tmp_path):
    folder = tmp_path / "wan"
    shutil.copytree(folders["official"], folder)
    inner = 2 * 32
    wan_keys = {  # a Wan LoRA: no key names a CogVideoX layer
        "blocks.0.self_attn.q.lora_A.weight": torch.zeros(RANK, inner),
        "blocks.0.self_attn.q.lora_B.weight": torch.zeros(inner, RANK),
    }
    save_file(wan_keys, str(folder / LORA_FILE))
    with pytest.raises(DwmDataError, match="no LoRA key matches the model") as info:
        WorldModel(tiny_base, folder)
    assert "\n" not in str(info.value) and "blocks.0.self_attn.q" in str(info.value)
    only_q = {
        k: v for k, v in load_file(str(folders["official"] / LORA_FILE)).items() if "to_q" in k
    }
    save_file(only_q, str(folder / LORA_FILE))
    with pytest.raises(DwmDataError, match="lacks 12 LoRA tensors"):
        WorldModel(tiny_base, folder)
    shutil.copy(folders["official"] / LORA_FILE, folder / LORA_FILE)
    (folder / "dwm_adapter.json").write_text('{"rank": 8, "alpha": 8}')  # a record that lies
    with pytest.raises(DwmDataError, match="LoRA shapes differ from the adapter's") as info:
        WorldModel(tiny_base, folder)
    assert "\n" not in str(info.value) and "size mismatch" in str(info.value)


def test_a_folder_without_record_needs_the_base_model(folders):
    with pytest.raises(DwmDataError, match="pass --base-model"):
        WorldModel.from_weights(folders["official"])


@pytest.mark.slow
def test_cli_samples_an_official_folder_on_the_base_model_given(folders, tiny_base, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from dwm_data.video import Codec, encode, probe

    frames = synthetic_triplet(FRAMES, WIDTH, HEIGHT, seed=7)
    for name in ("static", "hand"):
        (tmp_path / f"{name}.mp4").write_bytes(encode(frames[name], 8, Codec(preset="ultrafast")))
    args = [
        "sample",
        folders["official"],
        tmp_path / "out.mp4",
        "--static",
        tmp_path / "static.mp4",
    ]
    args += ["--hand", tmp_path / "hand.mp4", "--recipe", "tiny", "--steps", "1"]
    runner = CliRunner()
    with pytest.raises(DwmDataError, match="pass --base-model"):
        runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    args += ["--base-model", tiny_base]
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    info = probe(tmp_path / "out.mp4")
    assert (info.frames, info.width, info.height) == (FRAMES, WIDTH, HEIGHT)
