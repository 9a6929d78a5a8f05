"""The Ray executor on a two-node Ray cluster on this machine (a head and a second raylet, as
separate processes, from Ray's own `cluster_utils`), joined through `run.ray.address`; the second
node is killed mid-run and its task must be rescheduled with nothing lost, duplicated or charged.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dwm_data.build import build
from dwm_data.recipe import load_recipe
from dwm_data.runs import records
from dwm_data.runs.folder import RunFolder
from dwm_data.store import read_samples

TESTS = Path(__file__).parent
pytestmark = pytest.mark.slow


@pytest.fixture
def two_nodes(monkeypatch):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # Ray's workers import the test sources
    monkeypatch.syspath_prepend(str(TESTS))
    # One CPU and one (declared) GPU per node: two tasks at once, one on each node.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False},
    )
    try:
        second = cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        yield cluster, second
    finally:
        cluster.shutdown()


def placements(out: Path) -> list[dict]:
    return records.read_lines(out / "ray" / "placements.jsonl")


def test_a_node_killed_mid_run_loses_duplicates_and_charges_nothing(two_nodes, tmp_path):
    cluster, second = two_nodes
    out = tmp_path / "run"
    killed: dict[str, int] = {}

    def kill_second_node_mid_task() -> None:
        """Once the second node's task has closed a unit and is on the next, kill the node."""
        folder = RunFolder(out)
        deadline = time.time() + 120
        while time.time() < deadline:
            for task in {p["task"] for p in placements(out) if p["node"] == second.node_id}:
                closed = list(folder.manifests.glob(f"*-{task:05d}-*.json"))
                if closed and records.read_running(folder, task).get("alive"):
                    cluster.remove_node(second)
                    killed.update(task=task, closed=len(closed))
                    return
            time.sleep(0.1)

    watcher = threading.Thread(target=kill_second_node_mid_task, daemon=True)
    watcher.start()
    recipe = load_recipe(
        "tiny",
        [
            "run.executor=ray",
            f"run.ray.address={cluster.address}",
            "run.ray.gpus_per_task=1",
            "run.ray.memory_per_task=200MB",
            "run.tasks=4",
            "shards.maxcount=1",
        ],
    )
    started = time.time()
    result = build(
        "cluster_sources:DeviceBuilder", {"units": 12, "delay": 1.0}, recipe, out, progress=False
    )
    watcher.join(timeout=5)
    print(f"12 units on 2 nodes, one killed mid-run: {time.time() - started:.1f} s")
    assert killed, "the second node never ran a task"
    assert result.ok, result.status.failures
    keys = Counter(s.key for s in read_samples(out))
    assert len(keys) == 12 and set(keys.values()) == {1}
    assert json.loads((out / "dataset.json").read_text())["totals"]["samples"] == 12
    assert not list((out / "deaths").glob("*.jsonl"))  # the node's death cost no unit
    runs = [p for p in placements(out) if p["task"] == killed["task"]]
    assert runs[0]["node"] == second.node_id and runs[-1]["node"] != second.node_id
    assert {p["node"] for p in placements(out)} >= {second.node_id, cluster.head_node.node_id}
    assert all(p["gpus"] == ["0"] for p in placements(out))  # each node's one GPU, per task
    logs = "".join(p.read_text() for p in (out / "logs").glob("0*.log"))
    assert logs.count("sees CUDA_VISIBLE_DEVICES='0'") >= 12
