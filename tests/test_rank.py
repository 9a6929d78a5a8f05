"""`dwm-data rank`: candidates simulated along one path and ordered by their outcome's score
against an image goal (LPIPS-VGG, lpips' own class) or a text goal (a CLIP model in
transformers' folder layout, random weights)."""

# ruff: noqa: F811 (fixtures imported from other test modules are parameters here)
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_model import tiny_base  # noqa: F401
from test_simulate import dwm_data, mano_track, room, weights  # noqa: F401

from dwm_data.hands.track import HandTrack
from dwm_model.metrics import VGG16_FILE, vgg16_features


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> Path:
    """torchvision's VGG16 file layout (`features.N.weight`), random weights."""
    import torch

    path = tmp_path_factory.mktemp("torch-hub") / VGG16_FILE
    torch.save({f"features.{k}": v for k, v in vgg16_features().state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A CLIP folder as openai/clip-vit-base-patch32 is laid out (config.json, safetensors,
    vocab.json + merges.txt BPE with </w> word ends, tokenizer and preprocessor configs), tiny
    and random: CLIP's own classes, its own tokenizer and image processor."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip")
    specials = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["open the drawer", "pick up the red cup", "push the box to the left", "a hand"] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=120, special_tokens=specials, end_of_word_suffix="</w>"
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64}
    text |= {"num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77}
    text |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    vision |= {"num_attention_heads": 2, "image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    CLIPModel(
        CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def candidates(mano_track, tmp_path_factory) -> list[Path]:
    """The sweeping hand, and the same hand 8 cm further to the left."""
    folder, track, _, _ = mano_track
    out = tmp_path_factory.mktemp("candidates")
    (out / "sweep.npz").write_bytes(track.to_npz())
    moved = {k: v.copy() for k, v in track.mano.items()}
    moved["transl"][:, 1, 0] -= 0.08
    shifted = HandTrack(track.valid, track.keypoints_cam - [0.08, 0, 0], track.keypoints_px, moved)
    (out / "left.npz").write_bytes(shifted.to_npz())
    return [out / "sweep.npz", out / "left.npz"]


def _rank(weights, room, candidates, goal, out, capsys, *extra):
    args = ["rank", weights, room / "room.ply", "--path", room / "camera.npy", "--goal", goal]
    for candidate in candidates:
        args += ["--candidates", candidate]
    return dwm_data([*args, "--out", out, "--motion-fps", "16", *extra], capsys)


@pytest.mark.slow
def test_ranking_by_an_image_goal_is_deterministic_and_ordered_by_score(
    weights, room, candidates, mano_track, vgg, tmp_path, capsys
):
    from PIL import Image

    goal = tmp_path / "goal.png"
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(goal)
    extra = ["--mano-dir", mano_track[0], "--set", f"eval.lpips_backbone={vgg}", "--seeds", "2"]
    runs = []
    for name in ("first", "again"):
        code, stdout, stderr = _rank(
            weights, room, candidates, goal, tmp_path / name, capsys, *extra
        )
        assert code == 0, stderr
        runs.append(json.loads((tmp_path / name / "rank.json").read_text()))
    first, again = runs
    assert [r["candidate"] for r in first["ranked"]] == [r["candidate"] for r in again["ranked"]]
    assert [r["scores"] for r in first["ranked"]] == [r["scores"] for r in again["ranked"]]
    scores = [r["score"] for r in first["ranked"]]
    assert scores == sorted(scores) and first["better"] == "lower"  # LPIPS: a distance
    assert all(len(r["scores"]) == 2 and r["seeds"] == [42, 43] for r in first["ranked"])
    assert all(r["score"] == pytest.approx(np.mean(r["scores"])) for r in first["ranked"])
    folder = tmp_path / "first"
    assert sorted(p.name for p in (folder / "candidates").iterdir()) == [
        "00-sweep-seed42", "00-sweep-seed43", "01-left-seed42", "01-left-seed43"
    ]  # fmt: skip
    sheet = Image.open(folder / "contact.png")
    assert sheet.size == (3 * 192 + 4, 30 + 144)  # the goal, two last frames: 3x, labelled
    table = (folder / "rank.md").read_text()
    assert "| 1 | " + first["ranked"][0]["candidate"] in table
    # each candidate's result is a simulate result; its recorded score is the table's
    best = first["ranked"][0]
    record = json.loads(
        (folder / "candidates" / f"{best['candidate']}-seed42" / "simulate.json").read_text()
    )
    assert record["rank"]["score"] == best["scores"][0]


@pytest.mark.slow
def test_ranking_by_a_text_goal_uses_clip(weights, room, candidates, clip, tmp_path, capsys):
    out = tmp_path / "text"
    code, _, stderr = _rank(
        weights, room, candidates, "open the drawer", out, capsys, "--clip", clip
    )
    assert code == 0, stderr
    ranked = json.loads((out / "rank.json").read_text())["ranked"]
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_missing_metric_weights_are_one_line_before_anything_runs(
    weights, room, candidates, tmp_path, capsys
):
    goal = tmp_path / "goal.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(goal)
    missing = ["--set", f"eval.lpips_backbone={tmp_path / 'nowhere.pth'}"]
    cases = [
        (goal, missing, "LPIPS VGG16 backbone not found"),
        ("open the drawer", [], "CLIP model for a text goal not found"),
        (tmp_path / "missing.png", [], "goal image"),
    ]
    for goal_arg, extra, message in cases:
        code, _, stderr = _rank(
            weights, room, candidates, goal_arg, tmp_path / "out", capsys, *extra
        )
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert not (tmp_path / "out").exists()
