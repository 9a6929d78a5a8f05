import io

import numpy as np
import pytest

from dwm_data.errors import SampleError
from dwm_data.fixtures.dwm_layout import synthetic_triplet
from dwm_data.sample import make_sample
from dwm_data.store import ShardWriter, read_decoded, read_samples
from dwm_data.video import Codec, decode

CODECS = {
    "video": Codec(preset="ultrafast"),
    "static": Codec(preset="ultrafast"),
    "hand": Codec(preset="ultrafast", pix_fmt="yuv444p"),
}


def sample(index, clip=0):
    frames = synthetic_triplet(9, 64, 48, seed=index)
    return make_sample(
        f"s-{index}-{clip}",
        frames,
        8,
        CODECS,
        f"prompt {index}",
        {"source": {"name": "test"}},
        camera=np.tile(np.eye(4, dtype=np.float32), (9, 1, 1)),
    )


def writer(tmp_path, maxcount=3, maxsize=10**9):
    return ShardWriter(tmp_path / "shards", tmp_path / "manifests", "t", 0, maxcount, maxsize)


def test_shards_roll_at_maxcount_without_splitting_units(tmp_path):
    w = writer(tmp_path, maxcount=3)
    w.add_unit("a", [sample(0, 0), sample(0, 1)])
    w.add_unit("b", [sample(1, 0), sample(1, 1)])  # would make 4 > 3: goes to a new shard
    w.add_unit("c", [sample(2)])
    w.close()
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    assert [p.name for p in shards] == ["t-00000-00000.tar", "t-00000-00001.tar"]
    assert [s.key for s in read_samples(shards[0])] == ["s-0-0", "s-0-1"]
    assert [s.key for s in read_samples(shards[1])] == ["s-1-0", "s-1-1", "s-2-0"]


def test_an_open_shard_is_invisible_and_a_leftover_is_cleaned(tmp_path):
    w = writer(tmp_path)
    w.add_unit("a", [sample(0)])
    assert not list((tmp_path / "shards").glob("*.tar"))  # only the .tar.tmp exists so far
    assert list((tmp_path / "shards").glob("*.tar.tmp"))
    again = writer(tmp_path)  # a new writer for the same task = a resumed task
    assert again.existing() == [] and not list((tmp_path / "shards").glob("*.tmp"))


def test_plain_webdataset_reads_our_shards(tmp_path):
    import webdataset as wds

    w = writer(tmp_path)
    w.add_unit("a", [sample(0), sample(0, 1)])
    w.close()
    urls = [str(p) for p in sorted((tmp_path / "shards").glob("*.tar"))]
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    items = list(dataset)
    assert [i["__key__"] for i in items] == ["s-0-0", "s-0-1"]
    first = items[0]
    assert decode(first["video.mp4"], expected_frames=9).shape == (9, 48, 64, 3)
    assert decode(first["hand.mp4"]).shape == (9, 48, 64, 3)
    assert first["txt"].decode() == "prompt 0"
    assert np.load(io.BytesIO(first["camera.npy"])).shape == (9, 4, 4)
    assert b'"schema_version": 1' in first["json"]


def test_reader_decodes_aligned_triplets_and_catches_broken_ones(tmp_path):
    w = writer(tmp_path)
    good = sample(3)
    w.add_unit("a", [good])
    w.close()
    ((decoded_sample, frames),) = list(read_decoded(tmp_path / "shards"))
    assert decoded_sample.key == "s-3-0" and frames["static"].shape == (9, 48, 64, 3)
    broken = sample(4)
    broken.static = sample(5).static[: len(sample(5).static) // 3]
    w2 = ShardWriter(tmp_path / "b", tmp_path / "bm", "t", 0, 10, 10**9)
    w2.add_unit("b", [broken])
    w2.close()
    with pytest.raises(Exception):  # noqa: B017 - corrupt video or mismatch, either is refused
        list(read_samples(tmp_path / "b"))


def test_maxsize_rolls_shards(tmp_path):
    one = len(b"".join(v for v in sample(0).to_wds().values() if isinstance(v, bytes)))
    w = writer(tmp_path, maxcount=100, maxsize=int(one * 1.5))
    for i in range(3):
        w.add_unit(f"u{i}", [sample(i)])
    w.close()
    assert len(list((tmp_path / "shards").glob("*.tar"))) == 3


def test_missing_json_member_is_a_sample_error(tmp_path):
    import tarfile

    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tar:
        data = sample(0).video
        info = tarfile.TarInfo("k.video.mp4")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(SampleError, match="missing member"):
        list(read_samples(path))
