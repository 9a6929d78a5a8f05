from fractions import Fraction

import numpy as np
import pytest

from dwm_data.video import (
    Codec,
    VideoError,
    decode,
    encode,
    fit_size,
    frame_times,
    place,
    probe,
    read_clip,
    select_frames,
)


def frames(count=49, width=64, height=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, i, axis=1) for i in range(count)])


def test_encode_writes_exactly_every_frame_despite_the_lookahead():
    data = encode(frames(49), 8, Codec(preset="medium"))
    info = probe(data)
    assert (info.frames, info.width, info.height, info.fps, info.codec, info.pix_fmt) == (
        49,
        64,
        48,
        Fraction(8),
        "h264",
        "yuv420p",
    )
    assert decode(data, expected_frames=49).shape == (49, 48, 64, 3)


def test_yuv444p_keeps_flat_hand_colours_exact_at_their_edges():
    stack = np.zeros((9, 48, 64, 3), np.uint8)
    stack[:, 10:30, 20:40] = (204, 102, 102)  # the official right-hand red on black
    out420 = decode(encode(stack, 8, Codec(preset="ultrafast", pix_fmt="yuv420p")))
    out444 = decode(encode(stack, 8, Codec(preset="ultrafast", pix_fmt="yuv444p")))
    assert probe(encode(stack, 8, Codec(pix_fmt="yuv444p"))).pix_fmt == "yuv444p"
    edge = (slice(None), slice(8, 32), slice(18, 42))
    err444 = np.abs(out444[edge].astype(int) - stack[edge]).max()
    err420 = np.abs(out420[edge].astype(int) - stack[edge]).max()
    assert err444 < err420 and err444 <= 6


def test_fps_is_a_fraction():
    data = encode(frames(9), Fraction(30000, 1001), Codec(preset="ultrafast"))
    assert probe(data).fps == Fraction(30000, 1001)


def test_odd_size_is_refused_clearly():
    with pytest.raises(VideoError, match="63x48"):
        encode(frames(3, width=63), 8, Codec())


def test_decode_checks_the_frame_count():
    with pytest.raises(VideoError, match="has 9 frames, expected 49"):
        decode(encode(frames(9), 8, Codec(preset="ultrafast")), expected_frames=49)


def libavfilter_fps_picks(source, fps, stamp_by_rate: bool = False) -> list[int]:
    """The source frames libavfilter's own `fps` filter outputs (buffer -> fps -> buffersink);
    `stamp_by_rate` times frames as ffmpeg's command line does for a stream without timestamps."""
    import av
    import av.filter

    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        buffer = graph.add_buffer(template=stream)
        fps_filter = graph.add("fps", str(fps))
        sink = graph.add("buffersink")
        buffer.link_to(fps_filter)
        fps_filter.link_to(sink)
        graph.configure()
        picks = []

        def drain():
            while True:
                try:
                    picks.append(graph.pull().opaque)
                except (av.BlockingIOError, av.EOFError):
                    return

        for index, frame in enumerate(container.decode(stream)):
            frame.opaque = index  # travels with the frame through the filter
            if stamp_by_rate:
                frame.pts = int(index / stream.average_rate / stream.time_base)
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return picks


def ours(source, fps, count=None) -> list[int]:
    timing = frame_times(source)
    if count is None:  # everything the filter gives: ask for more, read what the error says
        with pytest.raises(VideoError, match="clip too short") as error:
            select_frames(timing.times, timing.end, fps, 10**6)
        count = int(str(error.value).split(" give ")[1].split(" of ")[0])
    return select_frames(timing.times, timing.end, fps, count)


def write_clip(path, times_ms: list[int], size=(32, 24)) -> None:
    """An H.264 clip whose frames are shown at the given milliseconds (variable frame rate)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for t in times_ms:
            frame = av.VideoFrame.from_ndarray(np.zeros((size[1], size[0], 3), np.uint8), "rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_select_frames_on_a_real_clip_is_libavfilter_fps(shared_data):
    path = shared_data("dwm_realworld/realworld_fixed/pour_coke.mp4")  # 190 frames, 29.97 fps
    reference = libavfilter_fps_picks(path, 8)
    assert reference[:5] == [1, 5, 9, 13, 16]  # as dwm-recipe.md section 14 measured
    assert ours(path, 8) == reference and len(reference) == 51
    assert ours(path, 8, 49) == reference[:49]


@pytest.mark.parametrize(
    ("rate", "frames", "fps"),
    [
        (Fraction(30000, 1001), 60, 8),
        (Fraction(30), 45, 8),
        (Fraction(25), 40, 8),
        (Fraction(24000, 1001), 30, 8),
        (Fraction(8), 12, 8),
        (Fraction(5), 10, 8),  # upsampling repeats frames
        (Fraction(60), 50, Fraction(30000, 1001)),
    ],
)
def test_select_frames_matches_libavfilter_fps_at_any_rate(tmp_path, rate, frames, fps):
    path = tmp_path / "clip.mp4"
    path.write_bytes(
        encode(np.zeros((frames, 24, 32, 3), np.uint8), rate, Codec(preset="ultrafast"))
    )
    assert ours(path, fps) == libavfilter_fps_picks(path, fps)


def test_select_frames_matches_libavfilter_fps_on_a_variable_rate_clip(tmp_path):
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.choice([20, 33, 34, 70, 125, 300], size=60)).tolist()  # drops and jitter
    write_clip(tmp_path / "vfr.mp4", [0, *times])
    reference = libavfilter_fps_picks(tmp_path / "vfr.mp4", 8)
    assert len(set(reference)) < len(reference)  # gaps make the filter repeat frames
    assert ours(tmp_path / "vfr.mp4", 8) == reference


def test_a_stream_without_timestamps_is_timed_by_its_frame_rate(tmp_path):
    import av

    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as container:  # raw H.264: no timestamps
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for _ in range(30):
            frame = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert probe(path).frames == 30
    assert frame_times(path).times[:3] == [0, Fraction(1, 25), Fraction(2, 25)]
    assert ours(path, 8) == libavfilter_fps_picks(path, 8, stamp_by_rate=True)


def test_too_short_clip_is_an_error_not_a_short_clip():
    times = [Fraction(i, 30) for i in range(100)]
    with pytest.raises(VideoError, match="clip too short: 100 frames at 30 fps give 27 of 49"):
        select_frames(times, Fraction(100, 30), 8, 49)


def test_letterbox_pads_and_crop_cuts_centred():
    assert fit_size(1920, 1080, 720, 480, "letterbox") == (720, 405)
    assert fit_size(1920, 1080, 720, 480, "crop") == (853, 480)
    wide = np.full((405, 720, 3), 200, np.uint8)
    boxed = place(wide, 720, 480)
    assert boxed[:37].max() == 0 and boxed[-38:].max() == 0 and boxed[37:442].min() == 200
    cropped = place(np.full((480, 854, 3), 9, np.uint8), 720, 480)
    assert cropped.shape == (480, 720, 3) and cropped.min() == 9


def test_read_clip_on_a_real_fixed_camera_clip(shared_data):
    path = shared_data("dwm_realworld/realworld_fixed/pour_coke.mp4")
    clip, indices = read_clip(path, 49, 8, 720, 480, "letterbox")
    assert clip.shape == (49, 480, 720, 3)
    assert indices[:4] == [1, 5, 9, 13]  # 29.97 fps -> 8 fps, as ffmpeg's fps=8
    assert clip[:, :30].max() < 20 and clip[:, -30:].max() < 20  # letterbox bars
    assert clip[:, 100:380].mean() > 40


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty video"),
        (b"not a video at all" * 100, "cannot open video|corrupt video|no video"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, match):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=match):
        probe(path)


def test_truncated_video_is_an_error_or_short(tmp_path):
    data = encode(frames(49), 8, Codec(preset="ultrafast"))
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError):
        decode(path, expected_frames=49)
