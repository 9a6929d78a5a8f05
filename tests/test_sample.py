import numpy as np
import pytest

from dwm_data.errors import SampleError
from dwm_data.sample import Sample, make_key, make_sample, pack_hands, unpack_hands
from dwm_data.video import Codec, encode

CODECS = {
    "video": Codec(preset="ultrafast"),
    "static": Codec(preset="ultrafast"),
    "hand": Codec(preset="ultrafast", pix_fmt="yuv444p"),
}


def stack(count=9, width=64, height=48, value=0):
    return np.full((count, height, width, 3), value, np.uint8)


def test_keys_never_contain_dots():
    assert (
        make_key("taste", "DoubleHand", "Office_55670_to_57854", 55672)
        == "taste-DoubleHand-Office_55670_to_57854-55672"
    )
    assert "." not in make_key("trumans", "scene", "2023-01-17@00-33-01.pkl", 3)


def test_make_sample_fills_the_shared_metadata():
    sample = make_sample(
        "k-1",
        {"video": stack(), "static": stack(), "hand": stack()},
        8,
        CODECS,
        "a prompt",
        {"source": {"name": "test", "license": "CC0-1.0"}},
        camera=np.tile(np.eye(4, dtype=np.float32), (9, 1, 1)),
    )
    assert sample.meta["schema_version"] == 1 and sample.meta["frames"] == 9
    assert sample.meta["codecs"]["hand"]["pix_fmt"] == "yuv444p"
    assert sample.meta["codecs"]["video"]["crf"] == 18
    again = Sample.from_wds(sample.to_wds())
    assert again.validate().frames == 9 and again.prompt == "a prompt"
    assert again.camera.shape == (9, 4, 4)


@pytest.mark.parametrize(
    ("static", "fps", "message"),
    [
        (stack(count=7), 8, "k-2: static.mp4 has frames 7, video.mp4 has 9"),
        (stack(width=32), 8, "k-2: static.mp4 has width 32, video.mp4 has 64"),
        (stack(), 10, "k-2: static.mp4 has fps 10 fps, video.mp4 has 8 fps"),
    ],
)
def test_mismatched_videos_are_refused_naming_key_and_mismatch(static, fps, message):
    encoded = {"static": encode(static, fps, CODECS["static"])}
    with pytest.raises(SampleError, match=message):
        make_sample(
            "k-2",
            {"video": stack(), "hand": stack()},
            8,
            CODECS,
            "",
            {"source": {"name": "t"}},
            encoded=encoded,
        )


def test_camera_with_nan_is_refused():
    camera = np.tile(np.eye(4, dtype=np.float32), (9, 1, 1))
    camera[3, 0, 3] = np.nan
    with pytest.raises(SampleError, match="camera.npy must be finite"):
        make_sample(
            "k",
            {n: stack() for n in ("video", "static", "hand")},
            8,
            CODECS,
            "",
            {"source": {}},
            camera=camera,
        )


def test_hands_npz_round_trips_and_is_checked_against_frames():
    valid = np.zeros((9, 2), bool)
    valid[2:5, 1] = True
    data = pack_hands(
        valid, np.zeros((9, 2, 21, 3)), np.zeros((9, 2, 21, 2)), mano_pose=np.zeros((9, 2, 45))
    )
    arrays = unpack_hands(data)
    assert arrays["valid"].sum() == 3 and arrays["mano_pose"].shape == (9, 2, 45)
    with pytest.raises(SampleError, match="hands.npz 'valid' is"):
        short = pack_hands(valid[:4], np.zeros((4, 2, 21, 3)), np.zeros((4, 2, 21, 2)))
        make_sample(
            "k",
            {n: stack() for n in ("video", "static", "hand")},
            8,
            CODECS,
            "",
            {"source": {}},
            hands=short,
        )


def test_bad_keys_and_missing_members_are_refused():
    sample = make_sample(
        "ok", {n: stack() for n in ("video", "static", "hand")}, 8, CODECS, "", {"source": {}}
    )
    sample.key = "has.dot"
    with pytest.raises(SampleError, match="no dots"):
        sample.validate()
    members = sample.to_wds()
    del members["hand.mp4"]
    with pytest.raises(SampleError, match="missing member"):
        Sample.from_wds(members)
