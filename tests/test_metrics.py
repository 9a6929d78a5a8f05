"""The official metrics: PSNR and SSIM against torchmetrics, LPIPS through lpips' own class and
shipped heads, DreamSim's ensemble from a folder in DreamSim's layout (random weights)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.video import Codec, decode, encode
from dwm_model.metrics import VGG16_FILE, Lpips, Scorer, psnr, ssim, vgg16_features

pytest.importorskip("torchmetrics")
CLIP = "dwm_realworld/realworld_dynamic/videos/00013.mp4"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The metric networks run several times faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clips():
    """An official clip re-read from mp4 and a degraded copy, also written and read back."""
    from conftest import shared_path

    truth = decode(shared_path(CLIP))[:9, ::4, ::4]
    rng = np.random.default_rng(0)
    noisy = np.clip(truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8)
    return truth, decode(encode(noisy, 8, Codec(preset="ultrafast")))


def test_psnr_pools_one_mse_over_the_clip_as_torchmetrics(clips):
    from torchmetrics.functional.image import peak_signal_noise_ratio

    truth, pred = clips
    x, y = (torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in (pred, truth))
    assert psnr(pred, truth) == pytest.approx(
        float(peak_signal_noise_ratio(x, y, data_range=1.0)), abs=1e-4
    )
    pooled = np.mean((pred.astype(float) - truth.astype(float)) ** 2)
    assert psnr(pred, truth) == pytest.approx(10 * math.log10(255**2 / pooled), abs=1e-4)
    # Not the mean of per-frame PSNRs: one frame much worse than the rest tells them apart.
    worse = pred.copy()
    worse[0] = 255 - worse[0]
    per_frame = [
        10 * math.log10(255**2 / np.mean((w.astype(float) - t) ** 2))
        for w, t in zip(worse, truth, strict=True)
    ]
    assert abs(psnr(worse, truth) - np.mean(per_frame)) > 3
    assert psnr(truth, truth) == math.inf


def test_ssim_is_torchmetrics_gaussian_ssim_over_the_frames(clips):
    from torchmetrics.functional.image import structural_similarity_index_measure

    truth, pred = clips
    x, y = (torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in (pred, truth))
    expected = float(structural_similarity_index_measure(x, y, data_range=1.0))
    assert ssim(pred, truth) == pytest.approx(expected, abs=1e-5)
    assert 0.3 < ssim(pred, truth) < 0.99 and ssim(truth, truth) == pytest.approx(1.0)
    with pytest.raises(DwmDataError, match="same"):
        ssim(truth, truth[:2])


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """A VGG16 file in torchvision's key layout (`features.N.*`), random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("torch-hub") / VGG16_FILE
    torch.save({f"features.{k}": v for k, v in vgg16_features().state_dict().items()}, path)
    return path


def test_lpips_is_lpips_own_vgg_model_with_its_shipped_heads(vgg_file, clips):
    import importlib.resources

    truth, pred = (clip[:3, ::2, ::2] for clip in clips)  # VGG16 is slow on a CPU
    metric = Lpips(vgg_file)
    import lpips  # imported by Lpips (torchvision's VGG16 layout stands in for its import)

    assert type(metric.model) is lpips.LPIPS and metric.model.pnet_type == "vgg"
    heads = torch.load(
        importlib.resources.files("lpips") / "weights/v0.1/vgg.pth",
        map_location="cpu",
        weights_only=True,
    )
    vendored = torch.load(  # the same heads torchmetrics vendors for its LPIPS
        importlib.resources.files("torchmetrics") / "functional/image/lpips_models/vgg.pth",
        map_location="cpu",
        weights_only=True,
    )
    assert heads.keys() == vendored.keys()
    for name, value in heads.items():
        assert torch.equal(metric.model.state_dict()[name], value)
        assert torch.equal(vendored[name], value)
    backbone = torch.load(vgg_file, weights_only=True)
    assert torch.equal(
        metric.model.net.state_dict()["slice3.10.weight"], backbone["features.10.weight"]
    )
    assert metric(truth, truth) == 0.0
    score = metric(pred, truth)
    assert score > 0 and score == pytest.approx(metric(truth, pred), rel=1e-5)
    worse = np.clip(truth.astype(int) + 80, 0, 255).astype(np.uint8)
    assert metric(worse, truth) > score


@pytest.mark.slow
def test_lpips_matches_lpips_on_torchvisions_own_vgg16(vgg_file, clips, tmp_path):
    """Where torchvision imports (HaMeR's private copy, made importable as HaMeR does), lpips
    builds on torchvision's real VGG16: same layers, same score as on the stand-in layout."""
    import os
    import subprocess
    import sys

    from dwm_data.hands.hamer import PRIVATE_TORCHVISION

    if not PRIVATE_TORCHVISION.is_dir():
        message = f"no private torchvision at {PRIVATE_TORCHVISION} (make setup installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    truth, pred = (clip[:2, ::2, ::2] for clip in clips)
    np.savez(tmp_path / "clips.npz", truth=truth, pred=pred)
    script = f"""
import json, warnings
import numpy as np
warnings.simplefilter("ignore")
from dwm_data.hands.hamer import _import_torchvision
_import_torchvision()
import torchvision
from dwm_model.metrics import Lpips, vgg16_features
real = torchvision.models.vgg16(weights=None).features
ours = vgg16_features()
clips = np.load({str(tmp_path / "clips.npz")!r})
metric = Lpips(__import__("pathlib").Path({str(vgg_file)!r}))
print(json.dumps({{
    "layers": [repr(a) for a in real] == [repr(b) for b in ours],
    "shapes": {{k: list(v.shape) for k, v in real.state_dict().items()}}
    == {{k: list(v.shape) for k, v in ours.state_dict().items()}},
    "torchvision": torchvision.__file__,
    "score": metric(clips["pred"], clips["truth"]),
}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["layers"] and found["shapes"]
    assert found["torchvision"].startswith(str(PRIVATE_TORCHVISION))
    assert found["score"] == pytest.approx(Lpips(vgg_file)(pred, truth), rel=1e-6)


def test_a_missing_metric_model_is_one_line_and_the_others_still_score(tmp_path, clips):
    scorer = Scorer(("psnr", "ssim", "lpips", "dreamsim"), tmp_path / VGG16_FILE, tmp_path / "ds")
    assert scorer.names == ["psnr", "ssim"]
    assert set(scorer.missing) == {"lpips", "dreamsim"}
    for line in scorer.missing.values():
        assert "\n" not in line and str(tmp_path) in line and "not found" in line
    assert VGG16_FILE in scorer.missing["lpips"]
    assert "dreamsim_ensemble_checkpoint.zip" in scorer.missing["dreamsim"]
    truth, pred = clips
    assert set(scorer(pred, truth)) == {"psnr", "ssim"}
    with pytest.raises(DwmDataError, match="unknown metric"):
        Scorer(("fid",), tmp_path, tmp_path)


# -- DreamSim -------------------------------------------------------------------------------
WIDTH, DEPTH, PROJ = 64, 12, 32


def dino_style(rng: torch.Generator, clip: bool) -> dict[str, torch.Tensor]:
    """A tower in DreamSim's files' key layout (DINO's VisionTransformer), random weights."""

    def r(*shape, scale=0.05):
        return torch.randn(*shape, generator=rng) * scale

    state = {
        "cls_token": r(1, 1, WIDTH),
        "pos_embed": r(1, 197, WIDTH),
        "patch_embed.proj.weight": r(WIDTH, 3, 16, 16),
        "patch_embed.proj.bias": torch.zeros(WIDTH) if clip else r(WIDTH),
        "norm.weight": 1 + r(WIDTH),
        "norm.bias": r(WIDTH),
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        state |= {
            f"{b}norm1.weight": 1 + r(WIDTH),
            f"{b}norm1.bias": r(WIDTH),
            f"{b}attn.qkv.weight": r(3 * WIDTH, WIDTH, scale=0.2),
            f"{b}attn.qkv.bias": r(3 * WIDTH),
            f"{b}attn.proj.weight": r(WIDTH, WIDTH, scale=0.2),
            f"{b}attn.proj.bias": r(WIDTH),
            f"{b}norm2.weight": 1 + r(WIDTH),
            f"{b}norm2.bias": r(WIDTH),
            f"{b}mlp.fc1.weight": r(4 * WIDTH, WIDTH, scale=0.2),
            f"{b}mlp.fc1.bias": r(4 * WIDTH),
            f"{b}mlp.fc2.weight": r(WIDTH, 4 * WIDTH, scale=0.2),
            f"{b}mlp.fc2.bias": r(WIDTH),
        }
    if clip:
        state |= {"pos_drop.weight": 1 + r(WIDTH), "pos_drop.bias": r(WIDTH)}
        state["proj"] = r(WIDTH, PROJ, scale=0.2)
    return state


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, clip: bool) -> torch.Tensor:
    """DINO's VisionTransformer forward written out on the file's tensors (one 64-wide head)."""
    import torch.nn.functional as F

    eps = 1e-5 if clip else 1e-6
    act = (lambda t: t * torch.sigmoid(1.702 * t)) if clip else F.gelu

    def norm(t, name):
        return F.layer_norm(t, (WIDTH,), state[f"{name}.weight"], state[f"{name}.bias"], eps)

    def lin(t, name):
        return F.linear(t, state[f"{name}.weight"], state[f"{name}.bias"])

    h = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([state["cls_token"].expand(len(h), -1, -1), h], dim=1) + state["pos_embed"]
    if clip:
        h = norm(h, "pos_drop")
    for i in range(DEPTH):
        b = f"blocks.{i}."
        q, k, v = lin(norm(h, f"{b}norm1"), f"{b}attn.qkv").chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(WIDTH), dim=-1) @ v
        h = h + lin(attn, f"{b}attn.proj")
        h = h + lin(act(lin(norm(h, f"{b}norm2"), f"{b}mlp.fc1")), f"{b}mlp.fc2")
    if clip:
        return norm(h, "norm")[:, 0] @ state["proj"]
    return h[:, 0]  # DreamSim's DINO feature: the CLS token after block 11, before the norm


@pytest.fixture(scope="module")
def dreamsim_folder(tmp_path_factory) -> Path:
    """A DreamSim folder as `dreamsim(cache_dir=...)` leaves it, random tiny-width towers."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("dreamsim")
    rng = torch.Generator().manual_seed(1)
    (folder / "checkpoints").mkdir()
    torch.save(dino_style(rng, clip=False), folder / "checkpoints/dino_vitbase16_pretrain.pth")
    for name in ("clip_vitb16_pretrain.pth.tar", "open_clip_vitb16_pretrain.pth.tar"):
        torch.save({"state_dict": dino_style(rng, clip=True)}, folder / name)
    lora = folder / "ensemble_lora"
    lora.mkdir()
    config = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.3, "bias": "none"}
    config["target_modules"] = ["qkv", "fc1", "out_proj", "fc2"]
    (lora / "adapter_config.json").write_text(json.dumps(config))
    adapter = {}
    for tower in range(3):
        for i in range(DEPTH):
            prefix = f"base_model.model.extractor_list.{tower}.model.blocks.{i}.attn.qkv"
            adapter[f"{prefix}.lora_A.weight"] = torch.randn(4, WIDTH, generator=rng) * 0.1
            adapter[f"{prefix}.lora_B.weight"] = torch.randn(3 * WIDTH, 4, generator=rng) * 0.1
    save_file(adapter, str(lora / "adapter_model.safetensors"))
    return folder


def test_dreamsim_towers_match_the_vit_forward_of_the_files_with_lora_merged(dreamsim_folder):
    from safetensors.torch import load_file

    from dwm_model.dreamsim import TOWERS, DreamSim, merge_lora

    metric = DreamSim(dreamsim_folder)
    states = []
    for name, _, _ in TOWERS:
        state = torch.load(dreamsim_folder / name, weights_only=True)
        states.append(state.get("state_dict", state))
    before = states[1]["blocks.3.attn.qkv.weight"].clone()
    adapter = load_file(str(dreamsim_folder / "ensemble_lora/adapter_model.safetensors"))
    merge_lora(states, adapter, 8 / 4)
    key = "base_model.model.extractor_list.1.model.blocks.3.attn.qkv"
    delta = adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"] * 2
    assert torch.allclose(states[1]["blocks.3.attn.qkv.weight"], before + delta)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        dino = metric.towers[0](pixel_values=x, output_hidden_states=True).hidden_states[-1][:, 0]
        clip = metric.towers[1](pixel_values=x).image_embeds
    assert torch.allclose(dino, reference_forward(states[0], x, clip=False), atol=1e-4)
    assert torch.allclose(clip, reference_forward(states[1], x, clip=True), atol=1e-4)


@pytest.mark.slow
def test_dreamsim_distance_of_video_frames(dreamsim_folder, clips):
    from dwm_model.dreamsim import DreamSim

    truth, pred = clips
    metric = DreamSim(dreamsim_folder)
    embed = metric.embed(truth[:2])
    assert embed.shape == (2, WIDTH + 2 * PROJ)
    assert torch.allclose(embed.norm(dim=1), torch.ones(2), atol=1e-5)
    assert metric(truth, truth) == pytest.approx(0.0, abs=1e-5)
    assert 0 < metric(pred, truth) == pytest.approx(metric(truth, pred), rel=1e-4)
    scorer = Scorer(("psnr", "dreamsim"), Path("unused"), dreamsim_folder)
    assert scorer.names == ["psnr", "dreamsim"] and not scorer.missing


DREAMSIM_REFERENCE = Path(sys.prefix) / "dreamsim-reference"
REFERENCE_SCRIPT = """
import json, sys, warnings
from functools import partial
from pathlib import Path
import numpy as np, torch
warnings.simplefilter("ignore")
from dwm_data.hands.hamer import _import_torchvision
_import_torchvision()  # dreamsim imports torchvision's transforms (pure Python)
sys.path.append(REFERENCE)
from dreamsim.feature_extraction.load_clip_as_dino import QuickGELU
from dreamsim.feature_extraction.vision_transformer import VisionTransformer
from dreamsim.model import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from dreamsim.model import normalize_embedding
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from dwm_model.dreamsim import TOWERS, DreamSim, resize

folder = Path(FOLDER)
frames = np.load(CLIPS)
adapter = load_file(str(folder / "ensemble_lora/adapter_model.safetensors"))
norms = [(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)] + [(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)] * 2


def embed(video):
    x, parts = resize(video), []
    for index, ((name, kind, act), (mean, std)) in enumerate(zip(TOWERS, norms)):
        state = torch.load(folder / name, weights_only=True)
        state = dict(state.get("state_dict", state))
        proj = state.pop("proj", None)
        vit = VisionTransformer(  # vit_base's settings at the test's width
            patch_size=16, embed_dim=WIDTH, depth=12, num_heads=1, mlp_ratio=4, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        )
        if kind == "clip":  # as dreamsim's load_clip_as_dino / load_open_clip_as_dino
            vit.pos_drop = torch.nn.LayerNorm(WIDTH)
        vit.load_state_dict(state)
        if kind == "clip":
            for m in vit.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.eps = 1e-5
            if act == "quick_gelu":
                for block in vit.blocks:
                    block.mlp.act = QuickGELU()
        model = get_peft_model(vit, LoraConfig(r=4, lora_alpha=8, target_modules=["qkv"]))
        prefix = f"base_model.model.extractor_list.{index}.model."
        own = {"base_model.model." + k[len(prefix):]: v for k, v in adapter.items() if k.startswith(prefix)}
        assert not set_peft_model_state_dict(model, own).unexpected_keys
        model.eval()
        pixels = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            if kind == "clip":
                parts.append(model(pixels) @ proj)
            else:  # the CLS token of block 11's output, as dreamsim's extractor hooks it
                seen = []
                hook = vit.blocks[11].register_forward_hook(lambda m, i, o: seen.append(o))
                model(pixels)
                hook.remove()
                parts.append(seen[0][:, 0])
    return normalize_embedding(torch.cat(parts, dim=-1))


a, b = embed(frames["truth"]), embed(frames["pred"])
ours = DreamSim(folder)
print(json.dumps({
    "embed": (ours.embed(frames["truth"]) - a).abs().max().item(),
    "distance": (1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).mean().item(),
    "ours": ours(frames["pred"], frames["truth"]),
}))
"""


@pytest.mark.slow
def test_dreamsim_equals_dreamsims_own_vit_with_peft_lora(dreamsim_folder, clips, tmp_path):
    """Against DreamSim's code (its ViT, its CLIP-as-DINO loading steps, its normalisation)
    with peft's LoRA on the same files: the same embeddings and distance."""
    import os
    import subprocess

    if not DREAMSIM_REFERENCE.is_dir():
        message = f"no DreamSim reference code at {DREAMSIM_REFERENCE} (make setup installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    truth, pred = (clip[:3] for clip in clips)
    np.savez(tmp_path / "clips.npz", truth=truth, pred=pred)
    values = {"REFERENCE": str(DREAMSIM_REFERENCE), "FOLDER": str(dreamsim_folder)}
    values |= {"CLIPS": str(tmp_path / "clips.npz"), "WIDTH": WIDTH}
    header = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    done = subprocess.run(
        [sys.executable, "-c", header + REFERENCE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"DreamSim vs DreamSim's code: {found}")
    assert found["embed"] < 1e-4
    assert found["ours"] == pytest.approx(found["distance"], abs=1e-5) and found["distance"] > 0


def test_dreamsim_folder_missing_a_file_names_it(dreamsim_folder, tmp_path):
    import shutil

    from dwm_model.dreamsim import DreamSim

    partial = tmp_path / "dreamsim"
    shutil.copytree(dreamsim_folder, partial)
    (partial / "clip_vitb16_pretrain.pth.tar").unlink()
    with pytest.raises(MissingAssetError, match=r"DreamSim weights \(clip_vitb16_pretrain"):
        DreamSim(partial)
