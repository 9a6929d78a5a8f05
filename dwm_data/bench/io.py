"""Shard writing vs bare PyAV encoding, and shard reading vs bare PyAV decoding, same frames."""

from __future__ import annotations

import io
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from dwm_data.bench import interleaved
from dwm_data.fixtures.dwm_layout import synthetic_triplet
from dwm_data.recipe import load_recipe
from dwm_data.sample import VIDEO_KEYS, make_sample
from dwm_data.store import ShardWriter, read_decoded
from dwm_data.video import Codec


def bare_encode(frames: np.ndarray, fps: Fraction, codec: Codec) -> bytes:
    """The baseline: the plainest correct PyAV loop (with the flush, or it would drop frames)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec.name, rate=fps)
        stream.width, stream.height, stream.pix_fmt = (
            frames.shape[2],
            frames.shape[1],
            codec.pix_fmt,
        )
        stream.options = {"crf": str(codec.crf), "preset": codec.preset}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def bare_decode(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def main(quick: bool = False) -> list[tuple[str, str]]:
    recipe = load_recipe("dwm")
    frames, width, height = (
        (17, 320, 240) if quick else (recipe.video.frames, recipe.video.width, recipe.video.height)
    )
    count, repeats = (2, 3) if quick else (3, 7)
    fps, codecs = recipe.video.rate, recipe.codecs.to_codecs()
    triplets = [synthetic_triplet(frames, width, height, seed=i) for i in range(count)]
    workdir = Path(tempfile.mkdtemp(prefix="dwm-bench-io-"))
    try:

        def baseline_write() -> None:
            for triplet in triplets:
                for name in VIDEO_KEYS:
                    bare_encode(triplet[name], fps, codecs[name])

        def ours_write() -> None:
            shutil.rmtree(workdir / "shards", ignore_errors=True)
            writer = ShardWriter(workdir / "shards", workdir / "manifests", "bench", 0, 100, 10**10)
            for i, triplet in enumerate(triplets):
                sample = make_sample(
                    f"bench-{i}", triplet, fps, codecs, "a prompt", {"source": {"name": "bench"}}
                )
                writer.add_unit(str(i), [sample])
            writer.close()

        base_w, ours_w = interleaved(baseline_write, ours_write, repeats)
        encoded = [
            {name: bare_encode(t[name], fps, codecs[name]) for name in VIDEO_KEYS} for t in triplets
        ]

        def baseline_read() -> None:
            for videos in encoded:
                for data in videos.values():
                    bare_decode(data)

        def ours_read() -> None:
            for _sample, _frames in read_decoded(workdir / "shards"):
                pass

        base_r, ours_r = interleaved(baseline_read, ours_read, repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    video_frames = count * 3 * frames
    return [
        (
            "input",
            f"{count} triplets x 3 videos x {frames} frames at {width}x{height}, {repeats} runs",
        ),
        ("bare PyAV encode", f"{base_w:.2f} s ({video_frames / base_w:.0f} frames/s)"),
        (
            "shard write (encode+check+tar)",
            f"{ours_w:.2f} s ({video_frames / ours_w:.0f} frames/s)",
        ),
        ("write overhead (target < 10%)", f"{(ours_w / base_w - 1) * 100:+.1f}%"),
        ("bare PyAV decode", f"{base_r:.2f} s ({video_frames / base_r:.0f} frames/s)"),
        ("shard read (tar+check+decode)", f"{ours_r:.2f} s ({video_frames / ours_r:.0f} frames/s)"),
        ("reader throughput vs bare (target >= 0.9x)", f"{base_r / ours_r:.2f}x"),
    ]
