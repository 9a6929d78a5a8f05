"""`dwm-data caption`: real transformers VLM and LM classes (tiny, random, saved in their real
folder layout) write the prompts of real shards; videos stay byte for byte, the old prompt stays
in json, a killed run resumes, `--captioner labels` keeps the source's prompts, a missing model
folder is one line, and the export holds both prompt folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dwm_data.build import build
from dwm_data.caption.captioner import parse_rewrite
from dwm_data.caption.options import CaptionSection
from dwm_data.dwm_layout.exporter import export_dwm
from dwm_data.fixtures.dwm_layout import write_synthetic_layout
from dwm_data.recipe import load_recipe
from dwm_data.runs.status import run_status
from dwm_data.store import read_samples

CLI = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[1]
# one worker: each worker process loads both models
ONE_WORKER = ["run.workers=1", "run.tasks=1", "shards.maxcount=2"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Six imported clips in three input shards."""
    root = tmp_path_factory.mktemp("caption-shards")
    write_synthetic_layout(root / "layout", clips=6, frames=9, width=64, height=48, fps=8)
    recipe = load_recipe("tiny", ONE_WORKER)
    assert build(
        "import-dwm", {"source": str(root / "layout")}, recipe, root / "in", progress=False
    ).ok
    return root / "in"


@pytest.fixture(scope="module")
def inputs(shards, tmp_path_factory) -> dict[str, Path]:
    """The input shards and the two tiny model folders."""
    from dwm_data.fixtures.caption import write_tiny_lm, write_tiny_vlm

    root = tmp_path_factory.mktemp("caption-models")
    return {
        "shards": shards,
        "vlm": write_tiny_vlm(root / "SmolVLM-tiny"),
        "lm": write_tiny_lm(root / "Llama-tiny"),
    }


@pytest.fixture(scope="module")
def captioned(inputs, tmp_path_factory) -> Path:
    """The input shards captioned by the tiny VLM and rewritten by the tiny LM."""
    out = tmp_path_factory.mktemp("captioned") / "out"
    caption(inputs, out, rewriter=str(inputs["lm"]))
    return out


def by_key(spec: Path) -> dict:
    return {s.key: s for s in read_samples(spec)}


def caption(inputs: dict[str, Path], out: Path, **options) -> dict:
    opts = {"shards": str(inputs["shards"]), "vlm": str(inputs["vlm"]), **options}
    result = build("caption", opts, load_recipe("tiny", ONE_WORKER), out, progress=False)
    assert result.ok, result.status
    return by_key(out)


@pytest.mark.slow
def test_the_folders_are_the_real_layout(inputs):
    vlm = {p.name for p in inputs["vlm"].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= vlm
    config = json.loads((inputs["vlm"] / "config.json").read_text())
    assert config["architectures"] == ["Idefics3ForConditionalGeneration"]
    lm = json.loads((inputs["lm"] / "config.json").read_text())
    assert lm["architectures"] == ["LlamaForCausalLM"]


@pytest.mark.slow
def test_vlm_and_rewrite_replace_txt_and_keep_everything_else(inputs, captioned, tmp_path):
    before, after = by_key(inputs["shards"]), by_key(captioned)
    assert sorted(after) == sorted(before) and len(after) == 6
    settings = load_recipe("tiny").section("caption", CaptionSection)
    for key, new in after.items():
        old = before[key]
        assert (new.video, new.static, new.hand) == (old.video, old.static, old.hand)
        meta = dict(new.meta)
        record = meta.pop("caption")
        assert meta == old.meta  # nothing else of the json changes
        assert record["hints"] == old.prompt and old.prompt.startswith("A right hand pushes")
        assert record["captioner"] == "vlm" and record["raw"].strip()
        assert (record["vlm"], record["rewriter"]) == ("SmolVLM-tiny", "Llama-tiny")
        assert record["engine"] == "transformers"  # no vLLM, no GPU here
        assert record["settings"] == settings.record() and "step" not in record["settings"]
        assert record["settings"]["frames"] == 3
        # random weights never answer the JSON the rewrite asks for: it is tried the recipe's
        # number of times, its answer is recorded and the raw caption stays the prompt
        rewrite = record["rewrite"]
        assert rewrite["tries"] == 2 and rewrite["text"] is None and rewrite["output"]
        assert new.prompt == record["raw"] != old.prompt

    # captioning again starts from the source's hints, and labels give its prompts back
    again = caption({**inputs, "shards": captioned}, tmp_path / "labels", captioner="labels")
    assert {k: s.prompt for k, s in again.items()} == {k: s.prompt for k, s in before.items()}

    # the export writes the raw caption to prompts/ and the prompt to prompts_rewrite/
    assert export_dwm(captioned, tmp_path / "export") == 6
    folder = tmp_path / "export" / "synthetic_scene" / "rec0"
    for key, new in after.items():
        stem = key.rsplit("-", 1)[1]
        raw = (folder / "prompts" / f"{stem}.txt").read_text(encoding="utf-8")
        assert raw == new.meta["caption"]["raw"]
        assert (folder / "prompts_rewrite" / f"{stem}.txt").read_text(
            encoding="utf-8"
        ) == new.prompt
        assert (folder / "videos" / f"{stem}.mp4").read_bytes() == before[key].video


@pytest.mark.slow
def test_a_build_with_the_caption_step_equals_build_then_caption(inputs, captioned, tmp_path):
    """`caption.step` in a builder's recipe: every member of every sample, json included, is
    what building and then running `dwm-data caption` writes (there in batches of two, here one
    clip per unit); the models load once per worker."""
    source = {"source": str(inputs["shards"].parent / "layout")}  # what `shards` imported
    models = [f"caption.step.vlm={inputs['vlm']}", f"caption.step.rewriter={inputs['lm']}"]
    stepped = tmp_path / "stepped"
    recipe = load_recipe("tiny", [*ONE_WORKER, *models])
    assert build("import-dwm", source, recipe, stepped, progress=False).ok
    built, plain, after = by_key(stepped), by_key(inputs["shards"]), by_key(captioned)
    assert sorted(built) == sorted(after) and len(built) == 6
    for key, sample in built.items():
        assert sample.to_wds() == after[key].to_wds()  # txt, json, videos: byte for byte
        assert sample.video == plain[key].video and sample.prompt != plain[key].prompt
        assert sample.meta["caption"]["hints"] == plain[key].prompt
    log = (stepped / "logs" / "00000.log").read_text()
    assert log.count("step CaptionStep set up") == 1 and log.count("samples in") == 6


def test_a_missing_caption_step_model_is_one_line(tmp_path):
    write_synthetic_layout(tmp_path / "layout", clips=1, frames=9, width=64, height=48, fps=8)
    absent = tmp_path / "models" / "absent"
    args = ["-r", "tiny", "--set", f"caption.step.vlm={absent}"]
    done = run_cli("import-dwm", str(tmp_path / "layout"), str(tmp_path / "out"), *args)
    assert_one_line(done, str(absent), "config.json", "caption.step.vlm")
    assert not (tmp_path / "out").exists()


def test_labels_keep_the_sources_prompts_without_any_model(shards, tmp_path):
    before = by_key(shards)
    after = caption(
        {"shards": shards, "vlm": tmp_path / "none"}, tmp_path / "out", captioner="labels"
    )
    for key, new in after.items():
        assert new.prompt == before[key].prompt and new.video == before[key].video
        assert new.meta["caption"] == {"captioner": "labels", "hints": before[key].prompt}
    assert export_dwm(tmp_path / "out", tmp_path / "export") == 6
    assert not list((tmp_path / "export").rglob("prompts/*.txt"))  # no caption, no raw caption
    assert len(list((tmp_path / "export").rglob("prompts_rewrite/*.txt"))) == 6


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_one_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(word in lines[0] for word in words), done.stderr


def test_a_missing_vlm_folder_is_one_line(shards, tmp_path):
    absent = tmp_path / "models" / "absent"
    done = run_cli("caption", str(shards), str(tmp_path / "out"), "--vlm", str(absent))
    assert_one_line(done, str(absent), "config.json", "--captioner labels")
    assert not (tmp_path / "out").exists()


def test_vllm_asked_for_but_not_installed_is_one_line(shards, tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    done = run_cli("caption", str(shards), str(tmp_path / "out"), "--engine", "vllm")
    assert_one_line(done, "vllm is not installed")


@pytest.mark.slow
def test_a_missing_rewriter_folder_is_one_line(inputs, tmp_path):
    absent = tmp_path / "models" / "absent"
    args = ["--vlm", str(inputs["vlm"]), "--rewriter", str(absent)]
    done = run_cli("caption", str(inputs["shards"]), str(tmp_path / "out"), *args)
    assert_one_line(done, str(absent), "config.json", "rewrite")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_processor_that_needs_torchvision_is_one_line(shards, tmp_path):
    """Qwen2-VL's processor cannot be built without torchvision (its video processor); its real
    folder names the processor class in preprocessor_config.json."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: Qwen2-VL processors build")
    from transformers import Qwen2VLConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    folder = tmp_path / "Qwen2-VL-tiny"
    Qwen2VLConfig().save_pretrained(folder)
    Qwen2VLImageProcessorPil().save_pretrained(folder)
    config = folder / "preprocessor_config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "processor_class": "Qwen2VLProcessor"})
    )
    done = run_cli("caption", str(shards), str(tmp_path / "out"), "--vlm", str(folder))
    assert_one_line(done, "Qwen2VLProcessor", "torchvision")


def test_rewrite_answers_are_read_as_the_template_asks():
    key = "rewritten description"
    assert parse_rewrite('Sure! {"rewritten description": "I open the drawer."}', key) == (
        "I open the drawer."
    )
    assert (
        parse_rewrite('{"rewritten description": "your rewritten description here"}', key) is None
    )
    assert parse_rewrite("I open the drawer.", key) is None
    assert parse_rewrite('{"other": "x"} {"rewritten description": "ok"}', key) == "ok"


@pytest.mark.slow
def test_a_killed_run_finishes_the_rest_on_rerun(inputs, tmp_path):
    # Twelve input shards: a tiny model captions a unit in milliseconds, so with three the run
    # could finish between the first manifest and the kill; eleven units cannot.
    source = tmp_path / "in"
    write_synthetic_layout(tmp_path / "layout", clips=24, frames=9, width=64, height=48, fps=8)
    recipe = load_recipe("tiny", ONE_WORKER)
    layout = {"source": str(tmp_path / "layout")}
    assert build("import-dwm", layout, recipe, source, progress=False).ok
    units = len(list((source / "manifests").glob("*.json")))
    out = tmp_path / "out"
    args = [
        "caption", str(source), str(out), "--vlm", str(inputs["vlm"]),
        "-r", "tiny", *(f"--set={s}" for s in ONE_WORKER), "-q",
    ]  # fmt: skip
    driver = subprocess.Popen([*CLI, *args], cwd=ROOT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "manifests").glob("*.json")):
        time.sleep(0.002)
    assert list((out / "manifests").glob("*.json")), "no shard was ever written"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (out / "dataset.json").exists() and run_status(out).done < units  # units were left
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    before, after = by_key(source), by_key(out)
    assert sorted(after) == sorted(before)  # every sample once
    assert all(after[k].video == before[k].video for k in before)
    assert {s.meta["caption"]["captioner"] for s in after.values()} == {"vlm"}


def test_the_prompt_is_the_template_with_the_sources_labels_as_hints(shards):
    from dwm_data.caption.captioner import Captioner, sample_frames
    from dwm_data.video import decode

    settings = load_recipe("dwm").section("caption", CaptionSection)
    assert settings.frames == 16 and settings.rewrite_tries == 10  # the official settings
    captioner = Captioner(settings, vlm=None)
    hinted = captioner.prompt("Pick up the cup. Put it in the sink.\n")
    assert hinted.startswith("Describe this video in detail") and "egocentric" in hinted
    assert hinted.endswith("Do not mention the notes.\n\nPick up the cup. Put it in the sink.")
    assert captioner.prompt("  ") == settings.template  # no hints, no notes
    sample = next(read_samples(shards))
    picked = sample_frames(sample, 3)
    assert (picked == decode(sample.video)[[0, 4, 8]]).all()  # spread evenly, ends included
    assert len(sample_frames(sample, 16)) == 9  # never more than the clip has


@pytest.mark.slow
def test_the_template_and_hints_reach_the_model_as_token_ids(inputs):
    """What the VLM's forward receives: the frames as numbered images, then the template with
    the source's prompt as hints, in the folder's chat template, then the generation prompt."""
    import torch

    from dwm_data.caption.captioner import Captioner

    settings = load_recipe("tiny").section("caption", CaptionSection)
    captioner = Captioner(settings, inputs["vlm"], device="cpu")
    seen: list[torch.Tensor] = []

    def first_forward(module, args, kwargs):
        if not seen:
            seen.append(kwargs["input_ids"])

    model = captioner.vlm.model
    handle = model.register_forward_pre_hook(first_forward, with_kwargs=True)
    try:
        sample = next(read_samples(inputs["shards"]))
        captioner.caption([sample])
    finally:
        handle.remove()
    (ids,) = seen[0].tolist()  # one sample, no padding
    tokenizer = captioner.vlm.tokenizer
    text = tokenizer.decode(ids)
    prompt = captioner.prompt(sample.prompt)
    assert sample.prompt in prompt and text.endswith(f"{prompt}<end_of_utterance>\nAssistant:")
    assert text.startswith("<|im_start|>User:Frame1: ")
    assert [text.count(f"Frame{i}: ") for i in (1, 2, 3, 4)] == [1, 1, 1, 0]
    # the prompt's own token ids are in the model's input whole, as the tokenizer makes them
    own = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert any(ids[i : i + len(own)] == own for i in range(len(ids) - len(own) + 1))
    image = model.config.image_token_id
    assert ids.count(image) > 0 and ids.count(image) % 3 == 0  # the same tokens for each frame
