"""The LoRA trainer: the base's objective on [noisy | mask | static | hand] latents, as snuvclab/dwm
(CogVideoX: v-prediction; Wan: flow matching; see `dwm_model.backbone`).

Several processes (torchrun: RANK, WORLD_SIZE, LOCAL_RANK) train one model with
DistributedDataParallel; each rank streams its own resampled shards for the same number of batches,
so uneven shards cannot leave one rank waiting in an all-reduce. Rank 0 writes the files.

A run folder holds `checkpoints/step-N/` (the two official weight files, optimiser, LR schedule,
data position and every RNG state, so `resume` continues bit for bit), `metrics.jsonl`,
`tensorboard/`, and the final weights at its top level. All training randomness (timesteps,
noise, latent samples, dropout) comes from one generator whose state is checkpointed; the data
stream is deterministic per seed, so resuming replays it to the saved position.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError
from dwm_data.recipe import Recipe
from dwm_model.config import TrainConfig, check_geometry

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
RECIPE = "recipe.json"
log = logging.getLogger(__name__)


class NonFiniteLoss(DwmDataError):
    """The loss became NaN or inf: the run stops and names the step and the batch."""


@dataclass
class Position:
    step: int = 0
    batches: int = 0
    samples: int = 0
    skipped: int = 0


@dataclass
class TrainResult:
    out: Path
    position: Position
    losses: list[float] = field(default_factory=list)
    data_seconds: float = 0.0
    model_seconds: float = 0.0
    cached: bool = False


class Trainer:
    """The model, optimiser and data stream of one run."""

    def __init__(
        self,
        shards: list[Path],
        out: Path,
        recipe: Recipe,
        notify: Callable[[str], None] = log.warning,
    ):
        import torch

        from dwm_model.backbone import open_backbone
        from dwm_model.base import resolve_base
        from dwm_model.data import cache_fingerprint, cached_shards, geometry_note

        self.cfg = cfg = recipe.section("train", TrainConfig)
        video = recipe.video
        check_geometry(video.frames, video.width, video.height)
        self.video, self.shards, self.out = video, shards, out
        cuda = torch.cuda.is_available()
        self.rank, self.world = init_distributed(cuda)
        self.device_type = "cuda" if cuda else "cpu"
        self.device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda else "cpu"
        dtype = torch.bfloat16 if cuda and cfg.bf16 else torch.float32
        self.base_folder = resolve_base(cfg.base_model, video.width, video.height, video.frames)
        self.base = open_backbone(self.base_folder, self.device, dtype)
        fingerprint = cache_fingerprint(
            self.base_folder, video.frames, video.width, video.height, cfg.max_text_length
        )
        self.cache = cached_shards(shards, fingerprint)
        note = (
            None if self.cache else geometry_note(shards, video.frames, video.width, video.height)
        )
        if note:
            notify(note)
        torch.manual_seed(cfg.seed)
        self.transformer = self.base.world_transformer(cfg.condition_channels)
        self.params = self.base.add_lora(
            self.transformer,
            cfg.lora_rank,
            cfg.lora_alpha,
            cfg.lora_targets,
            cfg.trainable_patterns,
        )
        unfrozen = [n for n, p in self.transformer.named_parameters() if p.requires_grad and "lora" not in n]  # fmt: skip
        if cfg.trainable_patterns and not unfrozen:
            raise DwmDataError(
                f"train.trainable_patterns {list(cfg.trainable_patterns)} match no layer of the "
                f"{self.base.kind} transformer; its default is {list(self.base.trainable_patterns)}"
            )
        if cfg.gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        self.transformer.train()
        self.runner = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.runner = DistributedDataParallel(self.transformer, find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        from diffusers.optimization import get_scheduler

        self.lr_schedule = get_scheduler(
            cfg.lr_schedule,
            self.optimizer,
            num_warmup_steps=cfg.warmup_steps,
            num_training_steps=cfg.max_steps,
        )
        self.generator = torch.Generator().manual_seed(cfg.seed + self.rank)
        self.position = Position()
        self._empty_prompt = None

    # -- data ---------------------------------------------------------------------------------
    def batches(self):
        """The batch stream from the current data position on."""
        from dwm_model.data import latent_decoder, make_loader, prefetch, video_decoder

        cfg = self.cfg
        total = cfg.max_steps * cfg.gradient_accumulation
        workers = max(cfg.num_workers, 1)
        urls = [str(p) for p in (self.cache or self.shards)]
        stage = (
            latent_decoder
            if self.cache
            else video_decoder(
                self.video.frames, self.video.width, self.video.height, self.video.resize
            )
        )
        loader = make_loader(
            urls,
            stage,
            cfg.batch_size,
            train=True,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            shuffle_buffer=cfg.shuffle_buffer,
            batches_per_worker=math.ceil(total / workers) + 1,
        )
        return prefetch(itertools.islice(iter(loader), self.position.batches, None))

    def empty_prompt(self):
        if self._empty_prompt is None:
            if self.cache:
                from dwm_model.data import load_empty_prompt

                self._empty_prompt = load_empty_prompt(self.shards[0]).to(self.device)
            else:
                self._empty_prompt = self.base.encode_prompts([""], self.cfg.max_text_length)[0]
        return self._empty_prompt

    def latents(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Scaled [B, F, C, h, w] latents and prompt embeddings, with hand and prompt dropout."""
        import torch

        out = {}
        for name in ("video", "static", "hand"):
            moments = batch[name] if self.cache else self.base.encode_moments(batch[name])
            moments = moments.to(self.device, torch.float32)
            out[name] = self.base.latents(moments, self.generator)
        if self.cache:
            embeds = batch["prompt_embeds"].to(self.device, self.base.dtype)
        else:
            embeds = self.base.encode_prompts(batch["prompt"], self.cfg.max_text_length)
        size = len(batch["key"])
        drop_hand = torch.rand(size, generator=self.generator) < self.cfg.hand_dropout
        drop_prompt = torch.rand(size, generator=self.generator) < self.cfg.prompt_dropout
        out["hand"][drop_hand.to(self.device)] = 0.0
        embeds = embeds.clone()
        embeds[drop_prompt.to(self.device)] = self.empty_prompt().to(embeds.dtype)
        out["prompt_embeds"] = embeds
        return out

    # -- the objective ----------------------------------------------------------------------
    def loss(self, latents: dict[str, Any]):
        """MSE between the model's output and the base's training target (CogVideoX: the
        velocity, elementwise the official (1/(1-a_t)) x0 loss without its 1176x blow-up near
        t = 0; Wan: the flow-matching target noise - x0, unweighted as the official "none")."""
        import torch

        noisy, t, target = self.base.training_example(latents["video"], self.generator)
        bf16 = self.base.dtype == torch.bfloat16
        with torch.autocast(self.device_type, torch.bfloat16, enabled=bf16):
            pred = self.base.predict(
                self.transformer,
                noisy.to(self.base.dtype),
                latents["static"],
                latents["hand"],
                latents["prompt_embeds"],
                t,
                self.runner,
            )
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def adapter_record(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "rank": cfg.lora_rank,
            "alpha": cfg.lora_alpha,
            "targets": list(cfg.lora_targets),
            "base_model": str(self.base_folder),
            "text_length": cfg.max_text_length,
        }

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Rank 0 writes the shared state, every rank its own RNG state, then rank 0 publishes."""
        import random

        import numpy as np
        import torch

        folder = self.out / CHECKPOINTS / f"step-{self.position.step:06d}"
        scratch = folder.with_name(folder.name + ".tmp")
        if self.rank == 0:
            shutil.rmtree(scratch, ignore_errors=True)
            self.base.save_weights(self.transformer, scratch, self.adapter_record())
            torch.save(self.optimizer.state_dict(), scratch / "optimizer.pt")
            torch.save(self.lr_schedule.state_dict(), scratch / "lr_schedule.pt")
            (scratch / "position.json").write_text(json.dumps(self.position.__dict__))
        barrier(self.world)
        rng = {
            "generator": self.generator.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        torch.save(rng, scratch / f"rng-{self.rank}.pt")
        barrier(self.world)
        if self.rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
            scratch.rename(folder)
            for old in checkpoints(self.out)[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old)
        barrier(self.world)
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        import random

        import numpy as np
        import torch

        self.base.load_weights(self.transformer, folder)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.lr_schedule.load_state_dict(torch.load(folder / "lr_schedule.pt", weights_only=True))
        rng_file = folder / f"rng-{self.rank}.pt"
        if not rng_file.is_file():
            raise DwmDataError(
                f"{folder} has no RNG state for rank {self.rank}: resume with the same world size"
            )
        rng = torch.load(rng_file, weights_only=False)
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.position = Position(**json.loads((folder / "position.json").read_text()))

    def backward(self, batch: dict[str, Any], last: bool) -> float:
        """One micro-batch's share of the gradient; DDP syncs only on the last of a step."""
        accumulation = self.cfg.gradient_accumulation
        quiet = self.runner is not None and not last
        with self.runner.no_sync() if quiet else contextlib.nullcontext():
            loss = self.loss(self.latents(batch))
            if not all_finite(loss, self.world):
                raise NonFiniteLoss(
                    f"loss is {loss.item()} at step {self.position.step + 1} on rank {self.rank}; "
                    f"batch keys: {', '.join(batch['key'])}"
                )
            (loss / accumulation).backward()
        return loss.item() / accumulation

    def log(self, metrics: _MetricsLog, board, record: dict[str, Any]) -> None:
        """Every step to metrics.jsonl, every `log_every` steps to TensorBoard."""
        pos = self.position
        record = record | {"skipped": pos.skipped}
        metrics.write(record)
        if pos.step % self.cfg.log_every == 0 or pos.step == self.cfg.max_steps:
            for name, value in record.items():
                if name != "step":
                    board.add_scalar(f"train/{name}", value, pos.step)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: bool = True) -> TrainResult:
        with torch_threads(self.cfg.threads):
            return self._run(progress)

    def _run(self, progress: bool) -> TrainResult:
        import torch
        from rich.progress import Progress, TextColumn, TimeElapsedColumn
        from torch.utils.tensorboard import SummaryWriter

        cfg, pos = self.cfg, self.position
        result = TrainResult(self.out, pos, cached=bool(self.cache))
        lead = self.rank == 0
        metrics = _MetricsLog(self.out / METRICS, pos.step) if lead else None
        board = (
            SummaryWriter(str(self.out / "tensorboard"), purge_step=pos.step + 1) if lead else None
        )
        stream = self.batches()
        columns = (
            *Progress.get_default_columns(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, disable=not (progress and lead)) as bar:
            task = bar.add_task("train", total=cfg.max_steps, completed=pos.step, info="")
            while pos.step < cfg.max_steps:
                data_s = model_s = 0.0
                total = 0.0
                for micro in range(cfg.gradient_accumulation):
                    tick = time.perf_counter()
                    batch = next(stream, None)
                    if batch is None:
                        raise DwmDataError(
                            "the shards yielded no usable batch (all samples broken?)"
                        )
                    tock = time.perf_counter()
                    total += self.backward(batch, last=micro == cfg.gradient_accumulation - 1)
                    pos.batches += 1
                    pos.samples += len(batch["key"])
                    pos.skipped += batch["skipped"]
                    data_s += tock - tick
                    model_s += time.perf_counter() - tock
                tock = time.perf_counter()
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                self.lr_schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
                pos.step += 1
                model_s += time.perf_counter() - tock
                result.losses.append(total)
                result.data_seconds += data_s
                result.model_seconds += model_s
                lr = self.lr_schedule.get_last_lr()[0]
                record = {
                    "step": pos.step,
                    "loss": total,
                    "lr": lr,
                    "data_s": data_s,
                    "model_s": model_s,
                }
                if lead:
                    self.log(metrics, board, record)
                step_s = data_s + model_s
                rate = cfg.batch_size * cfg.gradient_accumulation / max(step_s, 1e-9)
                info = f"loss {total:.4f}  {step_s:.2f} s/step  {rate:.1f} samples/s"
                bar.update(task, completed=pos.step, info=info)
                if pos.step % cfg.checkpoint_every == 0 or pos.step == cfg.max_steps:
                    self.save_checkpoint()
        if lead:
            board.close()
            self.base.save_weights(self.transformer, self.out, self.adapter_record())
        barrier(self.world)
        return result


@contextlib.contextmanager
def torch_threads(count: int):
    """Run with `count` torch CPU threads (0: leave as is), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def init_distributed(cuda: bool) -> tuple[int, int]:
    """(rank, world size) from torchrun's environment, joining the process group when > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if cuda:
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return int(os.environ.get("RANK", "0")), world


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_finite(loss, world: int) -> bool:
    """Whether every rank's loss is finite; all ranks stop together rather than one hanging."""
    import torch

    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


class _MetricsLog:
    """metrics.jsonl, cut back to the resumed step so it never holds a step twice."""

    def __init__(self, path: Path, step: int):
        kept = []
        if path.is_file():
            kept = [
                line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step
            ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in kept))
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in (out / CHECKPOINTS).glob("step-*") if not p.name.endswith(".tmp"))


def train(
    shards: list[Path],
    out: Path,
    recipe: Recipe,
    resume: bool = False,
    progress: bool = True,
    notify: Callable[[str], None] = log.warning,
) -> TrainResult:
    """Train (or with `resume`, continue from the latest checkpoint in `out`); `notify` gets the
    one line on shards whose clips differ from the recipe, before the first step."""
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(shards, out, recipe, notify)
    if resume:
        found = checkpoints(out)
        if not found:
            raise DwmDataError(f"--resume: no checkpoint in {out / CHECKPOINTS}")
        trainer.load_checkpoint(found[-1])
    elif checkpoints(out):
        raise DwmDataError(f"{out} already holds checkpoints; pass --resume or another folder")
    if trainer.rank == 0:
        (out / RECIPE).write_text(json.dumps(recipe.dump(), indent=2))
    return trainer.run(progress)


def run_recipe(weights: Path, overrides: list[str] | None = None) -> Recipe:
    """The recipe a run folder (or one of its checkpoints) was trained with, from its
    `recipe.json`, with `overrides` on top; it goes through the same checks as a preset."""
    from dwm_data.recipe import load_recipe

    for folder in (weights, weights.parent.parent):
        if (folder / RECIPE).is_file():
            saved = json.loads((folder / RECIPE).read_text())
            return load_recipe("dwm", [*_as_overrides(saved), *(overrides or [])])
    raise DwmDataError(
        f"{weights} holds no {RECIPE} (nor does its run folder): pass the training recipe with -r"
    )


def _as_overrides(data: dict[str, Any], prefix: str = "") -> list[str]:
    """A nested recipe dump as `a.b=value` overrides (JSON values parse as YAML)."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _as_overrides(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out
