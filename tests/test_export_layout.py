"""export-dwm writes the official layout per source and the split lists the official trainer
reads; official split lists survive an import and export unchanged."""

from pathlib import Path

import numpy as np
import pytest

from dwm_data.build import build
from dwm_data.dwm_layout.exporter import MARKER, export_dwm
from dwm_data.errors import DwmDataError
from dwm_data.fixtures.dwm_layout import write_synthetic_layout
from dwm_data.recipe import load_recipe
from dwm_data.sample import make_sample
from dwm_data.store import ShardWriter, read_samples

SUBDIRS = ("videos", "videos_static", "videos_hands", "prompts_rewrite")


def official_lines(shared_data, name: str, count: int) -> list[str]:
    """`count` lines spread over an official split list (several scenes and recordings)."""
    lines = shared_data(f"splits/{name}.txt").read_text().splitlines()
    return [lines[i] for i in np.linspace(0, len(lines) - 1, count).astype(int)]


def write_listed(root: Path, lines: list[str], frames: int = 9, fps: int = 8) -> None:
    """Triplets at the listed paths, by default already in the tiny recipe's format (stored as
    they are)."""
    by_folder: dict[str, list[str]] = {}
    for line in lines:
        video = Path(line)
        by_folder.setdefault(video.parent.parent.as_posix(), []).append(video.stem)
    for folder, stems in by_folder.items():
        write_synthetic_layout(
            root, len(stems), frames, 64, 48, fps, scene=folder, recording=".", stems=stems
        )


@pytest.mark.parametrize("listing", ["trumans_test", "taste_rob_train"])
def test_official_split_list_round_trips(shared_data, tmp_path, listing):
    lines = official_lines(shared_data, listing, 6)
    write_listed(tmp_path / "data", lines)
    (tmp_path / f"{listing}.txt").write_text("\n".join(lines))  # as released: no final newline
    options = {"source": str(tmp_path / f"{listing}.txt"), "data_root": str(tmp_path / "data")}
    result = build("import-dwm", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    assert result.ok and result.status.samples == 6
    assert export_dwm(tmp_path / "run", tmp_path / "out") == 6
    assert (tmp_path / "out" / f"{listing}.txt").read_text().splitlines() == lines
    for line in lines:
        for sub in SUBDIRS:
            relative = line.replace("/videos/", f"/{sub}/")
            if sub == "prompts_rewrite":
                relative = relative.removesuffix(".mp4") + ".txt"
            exported = tmp_path / "out" / relative
            assert exported.read_bytes() == (tmp_path / "data" / relative).read_bytes()


def test_re_encoded_imports_take_their_sources_official_codecs(shared_data, tmp_path):
    lines = [*official_lines(shared_data, "trumans_test", 1)]
    lines += official_lines(shared_data, "taste_rob_test", 1)
    write_listed(tmp_path / "data", lines, frames=20, fps=16)  # 16 fps: resampled, re-encoded
    (tmp_path / "list.txt").write_text("\n".join(lines))
    options = {"source": str(tmp_path / "list.txt"), "data_root": str(tmp_path / "data")}
    build("import-dwm", options, load_recipe("tiny"), tmp_path / "run", progress=False)
    codecs = {
        s.meta["layout"]["dir"].split("/")[0]: s.meta["codecs"]
        for s in read_samples(tmp_path / "run")
    }
    assert codecs["trumans"]["hand"]["crf"] == 18 and codecs["trumans"]["static"]["gop"] == 18
    assert codecs["taste_rob"]["hand"] == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "crf": 23,
        "preset": "ultrafast",  # the tiny recipe's speed setting
    }


def test_real_world_examples_round_trip_through_a_list(shared_data, tmp_path):
    root = shared_data("dwm_realworld")
    lines = [f"realworld_dynamic/videos/{stem}.mp4" for stem in ("00039", "00013", "00017")]
    (tmp_path / "realworld_test.txt").write_text("\n".join(lines) + "\n")
    options = {"source": str(tmp_path / "realworld_test.txt"), "data_root": str(root)}
    build("import-dwm", options, load_recipe("dwm"), tmp_path / "run", progress=False)
    export_dwm(tmp_path / "run", tmp_path / "out")
    assert (tmp_path / "out" / "realworld_test.txt").read_text().splitlines() == lines  # order kept
    for path in (root / "realworld_dynamic").rglob("*.*"):
        relative = path.relative_to(root)
        assert (tmp_path / "out" / relative).read_bytes() == path.read_bytes(), relative


def built(key: str, source: dict, **meta) -> object:
    frames = {
        name: np.full((9, 48, 64, 3), value, np.uint8)
        for name, value in (("video", 90), ("static", 60), ("hand", 0))
    }
    codecs = load_recipe("tiny").codecs.to_codecs()
    return make_sample(key, frames, 8, codecs, f"prompt of {key}", {"source": source, **meta})


def write_shard(folder: Path, samples) -> Path:
    writer = ShardWriter(folder / "shards", folder / "manifests", "t", 0, 100, 10**9)
    writer.add_unit("u", list(samples))
    writer.close()
    return folder


def test_built_samples_go_where_the_official_lists_put_their_sources(shared_data, tmp_path):
    trumans_line = official_lines(shared_data, "trumans_test", 1)[0]
    _, _, scene, recording, _, clip = trumans_line.removesuffix(".mp4").split("/")
    taste_line = official_lines(shared_data, "taste_rob_test", 1)[0]
    _, subset, taste_scene, _, clip_id = taste_line.removesuffix(".mp4").split("/")
    samples = [
        built(
            "trumans-a",
            {"name": "trumans", "scene": scene, "recording": recording, "clip": int(clip)},
            render={"fov": 90},
        ),
        built(
            "taste-a",
            {"name": "taste-rob", "subset": subset, "scene": taste_scene, "id": clip_id},
        ),
        built("aria-a", {"name": "aria", "capture": "kitchen", "clip": 2}),
    ]
    export_dwm(write_shard(tmp_path / "run", samples), tmp_path / "out", split="test")
    out = tmp_path / "out"
    assert (out / "trumans_test.txt").read_text().splitlines() == [trumans_line]
    assert (out / "taste_rob_test.txt").read_text().splitlines() == [taste_line]
    assert (out / "realworld_test.txt").read_text().splitlines() == [
        "realworld/realworld_dynamic/videos/kitchen_00002.mp4"
    ]
    for line in (trumans_line, taste_line):  # the trainer finds the others as sibling folders
        for sub in SUBDIRS[1:3]:
            assert (out / line.replace("/videos/", f"/{sub}/")).is_file()
    prompt = out / trumans_line.replace("/videos/", "/prompts_rewrite/").replace(".mp4", ".txt")
    assert prompt.read_text() == "prompt of trumans-a"


def test_collisions_and_unknown_sources_fail_and_overwrite_nothing(tmp_path):
    aria = {"name": "aria", "capture": "kitchen", "clip": 0}
    good = write_shard(tmp_path / "good", [built("aria-a", aria)])
    export_dwm(good, tmp_path / "out")
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    twice = write_shard(tmp_path / "twice", [built("aria-b", aria), built("aria-c", aria)])
    with pytest.raises(DwmDataError, match="aria-b and aria-c both go to realworld/"):
        export_dwm(twice, tmp_path / "out", overwrite=True)
    unknown = write_shard(tmp_path / "unknown", [built("bench-a", {"name": "bench"})])
    with pytest.raises(DwmDataError, match="comes from 'bench', which has no place"):
        export_dwm(unknown, tmp_path / "out", overwrite=True)
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "out", "twice", "unknown"]


def test_an_export_replaces_only_an_earlier_export_and_only_when_asked(tmp_path):
    first = write_shard(
        tmp_path / "a", [built("aria-a", {"name": "aria", "capture": "k", "clip": 0})]
    )
    second = write_shard(
        tmp_path / "b", [built("aria-b", {"name": "aria", "capture": "k", "clip": 1})]
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DwmDataError, match="is not empty and not an export"):
        export_dwm(first, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    export_dwm(first, tmp_path / "empty")  # an empty folder is fine
    export_dwm(first, tmp_path / "out")
    assert (tmp_path / "out" / MARKER).is_file()
    with pytest.raises(DwmDataError, match="pass --overwrite to replace it"):
        export_dwm(second, tmp_path / "out")
    export_dwm(second, tmp_path / "out", overwrite=True)
    videos = sorted(p.name for p in (tmp_path / "out").rglob("videos/*.mp4"))
    assert videos == ["k_00001.mp4"]  # replaced, not merged
