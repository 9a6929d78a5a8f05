"""Two CPU processes (gloo) train one model on uneven shards: nobody hangs, weights stay equal."""

# ruff: noqa: F811 (fixtures imported from test_model are parameters here)
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_model import FRAMES, HEIGHT, WIDTH, tiny_base, write_shard  # noqa: F401

RANK_SCRIPT = """
import hashlib, json, sys
from pathlib import Path
import torch
from dwm_data.recipe import load_recipe
from dwm_model.train import Trainer, checkpoints
shards, out, resume = [Path(p) for p in sys.argv[1].split(",")], Path(sys.argv[2]), sys.argv[3] == "1"
recipe = load_recipe("tiny", ["train.max_steps=4", "train.checkpoint_every=2", "train.num_workers=1",
                             "train.gradient_accumulation=2"])
trainer = Trainer(shards, out, recipe)
if resume:
    trainer.load_checkpoint(checkpoints(out)[0])
result = trainer.run(progress=False)
digest = hashlib.sha256()
for param in trainer.params:
    digest.update(param.detach().numpy().tobytes())
print(json.dumps({"rank": trainer.rank, "losses": result.losses, "batches": result.position.batches,
                  "params": digest.hexdigest()}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_ranks(shards: list[Path], out: Path, cache: Path, resume: bool = False) -> list[dict]:
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            DWM_MODEL_CACHE=str(cache),
            OMP_NUM_THREADS="1",
        )
        args = [
            sys.executable,
            "-c",
            RANK_SCRIPT,
            ",".join(map(str, shards)),
            str(out),
            "1" if resume else "0",
        ]
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc in procs:
        assert proc.returncode == 0, "\n".join(err[-2000:] for _, err in outputs)
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    return sorted(results, key=lambda r: r["rank"])


@pytest.mark.slow
def test_two_ranks_on_uneven_shards_finish_in_step_and_resume(tmp_path, tiny_base):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_base, cache / f"tiny-{WIDTH}x{HEIGHT}x{FRAMES}")
    write_shard(tmp_path / "u-000000.tar", [0, 1, 2])
    write_shard(tmp_path / "u-000001.tar", [3])
    write_shard(tmp_path / "u-000002.tar", [4, 5])
    shards = sorted(tmp_path.glob("u-*.tar"))
    ranks = _run_ranks(shards, tmp_path / "run", cache)
    assert [r["batches"] for r in ranks] == [8, 8]  # 4 steps x 2 accumulated batches
    assert ranks[0]["params"] == ranks[1]["params"]  # gradients were all-reduced every step
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank saw its own data and noise
    assert (tmp_path / "run" / "pytorch_lora_weights.safetensors").is_file()
    step2 = tmp_path / "run" / "checkpoints" / "step-000002"
    assert (step2 / "rng-0.pt").is_file() and (step2 / "rng-1.pt").is_file()

    resumed = _run_ranks(shards, tmp_path / "run", cache, resume=True)
    for full, again in zip(ranks, resumed, strict=True):
        assert again["losses"] == full["losses"][2:]
        assert again["params"] == full["params"]
