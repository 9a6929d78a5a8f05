import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dwm_data.build import build
from dwm_data.dwm_layout.exporter import MARKER, export_dwm
from dwm_data.fixtures.dwm_layout import write_synthetic_layout
from dwm_data.recipe import load_recipe
from dwm_data.store import read_decoded, read_samples
from dwm_data.video import probe

CLI = [sys.executable, "-m", "cli.main"]


def same_tree(a: Path, b: Path, extra: set[str] = frozenset()) -> list[str]:
    """Relative paths that differ (or exist on one side only), byte for byte; `extra` files
    may exist in b only."""
    files_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} - set(extra)
    differ = sorted(files_a ^ files_b)
    differ += [p for p in sorted(files_a & files_b) if not filecmp.cmp(a / p, b / p, shallow=False)]
    return differ


def test_official_triplets_round_trip_byte_for_byte(shared_data, tmp_path):
    source = shared_data("dwm_realworld/realworld_dynamic")
    result = build(
        "import-dwm",
        {"source": str(source), "license": "Apache-2.0"},
        load_recipe("dwm"),
        tmp_path / "run",
        progress=False,
    )
    assert result.ok and result.status.samples == 3
    samples = list(read_samples(tmp_path / "run"))
    assert {s.meta["stored_as_is"] == ["hand", "static", "video"] for s in samples} == {True}
    assert {s.infos["hand"].pix_fmt for s in samples} == {"yuv444p"}
    # the json says how the stored files were encoded (their own x264 headers), not the recipe
    assert {s.meta["codecs"]["hand"]["crf"] for s in samples} == {23.0}
    assert "preset" not in samples[0].meta["codecs"]["hand"]
    assert export_dwm(tmp_path / "run", tmp_path / "out") == 3
    assert same_tree(source, tmp_path / "out", {MARKER, "dwm_train.txt"}) == []
    listed = (tmp_path / "out" / "dwm_train.txt").read_text().splitlines()
    assert listed == [f"videos/{stem}.mp4" for stem in ("00013", "00017", "00039")]


def test_plain_webdataset_reads_imported_real_shards(shared_data, tmp_path):
    import webdataset as wds

    source = shared_data("dwm_realworld/realworld_dynamic")
    build(
        "import-dwm", {"source": str(source)}, load_recipe("dwm"), tmp_path / "run", progress=False
    )
    urls = sorted(str(p) for p in (tmp_path / "run" / "shards").glob("*.tar"))
    keys = sorted(
        item["__key__"] for item in wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    )
    assert keys == ["dwm-00013", "dwm-00017", "dwm-00039"]


def test_list_file_input_resamples_to_the_recipe(shared_data, tmp_path):
    shared_data("dwm_realworld/realworld_dynamic")
    listing = tmp_path / "list.txt"
    listing.write_text("realworld_dynamic/videos/00013.mp4\nrealworld_dynamic/videos/00039.mp4\n")
    options = {"source": str(listing), "data_root": str(shared_data("dwm_realworld"))}
    result = build("import-dwm", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    assert result.ok and result.status.samples == 2
    for sample, frames in read_decoded(tmp_path / "run"):
        assert sample.key.startswith("dwm-realworld_dynamic-")
        assert frames["video"].shape == (9, 48, 64, 3)
        assert sample.meta["source_frames"] == list(range(9))
        assert sample.prompt.strip()


def make_bad_inputs(root: Path) -> Path:
    """Six clips in the official layout; five of them broken in the ways the field meets."""
    write_synthetic_layout(root, clips=6, frames=12, width=96, height=64, fps=8)
    base = root / "synthetic_scene" / "rec0"
    video = (base / "videos" / "00000.mp4").read_bytes()
    (base / "videos" / "00001.mp4").write_bytes(video[: len(video) // 3])  # truncated
    (base / "videos_static" / "00002.mp4").write_bytes(b"")  # empty file
    (base / "prompts_rewrite" / "00003.txt").unlink()  # missing prompt
    (base / "videos_hands" / "00004.mp4").unlink()  # missing file
    shutil.copy(base / "videos" / "00000.mp4", base / "videos_static" / "00005.mp4")
    return base


def test_bad_inputs_are_recorded_failures_and_the_rest_finishes(tmp_path):
    make_bad_inputs(tmp_path / "in")
    recipe = load_recipe("tiny", ["video.frames=25"])  # 12 source frames cannot give 25: too short
    result = build(
        "import-dwm", {"source": str(tmp_path / "in")}, recipe, tmp_path / "run", progress=False
    )
    reasons = {
        f["unit"].rsplit("/", 1)[1]: (f["stage"], f["message"]) for f in result.status.failures
    }
    assert set(reasons) == {"00000", "00001", "00002", "00003", "00004", "00005"}
    assert "clip too short" in reasons["00000"][1]
    assert reasons["00002"][1].startswith("empty video file")
    assert reasons["00003"][0] == "prompt"
    assert "missing videos_hands/00004.mp4" in reasons["00004"][1]
    ok = build(
        "import-dwm",
        {"source": str(tmp_path / "in")},
        load_recipe("tiny"),
        tmp_path / "run2",
        progress=False,
    )
    reasons = {f["unit"].rsplit("/", 1)[1] for f in ok.status.failures}
    assert reasons == {
        "00001",
        "00002",
        "00003",
        "00004",
    }  # 9 frames fit; 00005's copy is valid too
    assert ok.status.samples == 2 and ok.status.finished


def test_cli_exit_code_says_some_failed_and_status_reads_the_files(tmp_path):
    make_bad_inputs(tmp_path / "in")
    run = subprocess.run(
        [*CLI, "import-dwm", str(tmp_path / "in"), str(tmp_path / "run"), "-r", "tiny", "-q"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stderr
    assert "4 failed" in run.stdout and "--retry-failed" in run.stdout
    status = subprocess.run([*CLI, "status", str(tmp_path / "run")], capture_output=True, text=True)
    assert status.returncode == 0 and "2 done, 4 failed, 0 pending of 6" in status.stdout
    assert "[prompt]" in status.stdout
    # the user fixes the prompt and retries the failures only
    (tmp_path / "in" / "synthetic_scene" / "rec0" / "prompts_rewrite" / "00003.txt").write_text(
        "fixed"
    )
    retry = subprocess.run(
        [
            *CLI,
            "import-dwm",
            str(tmp_path / "in"),
            str(tmp_path / "run"),
            "-r",
            "tiny",
            "-q",
            "--retry-failed",
        ],
        capture_output=True,
        text=True,
    )
    assert "3 done, 3 failed" in retry.stdout
    inspect = subprocess.run(
        [*CLI, "inspect", str(tmp_path / "run")], capture_output=True, text=True
    )
    assert inspect.returncode == 0 and "9 frames 64x48 @ 8 fps: 3" in inspect.stdout


def test_export_of_imported_samples_keeps_their_folders(tmp_path):
    write_synthetic_layout(tmp_path / "in", clips=2)
    build(
        "import-dwm",
        {"source": str(tmp_path / "in")},
        load_recipe("tiny"),
        tmp_path / "run",
        progress=False,
    )
    export_dwm(tmp_path / "run", tmp_path / "out")
    exported = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.mp4")
    )
    assert exported[0] == "synthetic_scene/rec0/videos/00000.mp4"
    assert probe(tmp_path / "out" / exported[0]).frames == 9


def test_preview_writes_a_contact_sheet_and_a_video(tmp_path):
    from PIL import Image

    from dwm_data.preview import write_preview

    write_synthetic_layout(tmp_path / "in", clips=2)
    build(
        "import-dwm",
        {"source": str(tmp_path / "in")},
        load_recipe("tiny"),
        tmp_path / "run",
        progress=False,
    )
    keys = write_preview(tmp_path / "run", tmp_path / "p.png", count=2)
    image = Image.open(tmp_path / "p.png")
    assert len(keys) == 2 and image.width >= 4 * 160  # four panels, upscaled from 64 px
    write_preview(tmp_path / "run", tmp_path / "p.mp4", keys=[keys[1]])
    assert probe(tmp_path / "p.mp4").frames == 9
    with pytest.raises(Exception, match="no sample"):
        write_preview(tmp_path / "run", tmp_path / "q.png", keys=["nope"])


def test_both_prompt_folders_round_trip_byte_for_byte(tmp_path):
    """prompts_rewrite/ is the txt (what the official trainer reads); the raw caption in
    prompts/ is kept in json, and export -> import -> export gives both folders back."""
    layout = tmp_path / "layout"
    write_synthetic_layout(layout, clips=2, frames=9, width=64, height=48, fps=8)
    base = layout / "synthetic_scene" / "rec0"
    (base / "prompts").mkdir()
    raws = {"00000": "I push the box café-left.\n", "00001": "Frame by frame:\r\nI push it.  "}
    for stem, text in raws.items():
        (base / "prompts" / f"{stem}.txt").write_bytes(text.encode("utf-8"))
    recipe = load_recipe("tiny")
    assert build("import-dwm", {"source": str(layout)}, recipe, tmp_path / "run", progress=False).ok
    samples = {s.meta["layout"]["stem"]: s for s in read_samples(tmp_path / "run")}
    for stem, sample in samples.items():
        assert sample.prompt == (base / "prompts_rewrite" / f"{stem}.txt").read_text("utf-8")
        assert sample.meta["caption"] == {"captioner": "imported", "raw": raws[stem]}
    export_dwm(tmp_path / "run", tmp_path / "out")
    assert same_tree(layout, tmp_path / "out", {MARKER, "dwm_train.txt"}) == []
    assert build(
        "import-dwm", {"source": str(tmp_path / "out")}, recipe, tmp_path / "run2", progress=False
    ).ok
    export_dwm(tmp_path / "run2", tmp_path / "out2")
    assert same_tree(tmp_path / "out", tmp_path / "out2") == []
