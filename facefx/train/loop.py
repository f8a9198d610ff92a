"""The one training loop of every stage: teachers (cyclegan), students (distill) and judges (judges).

A stage supplies its networks, its step function and its evaluation (a `Stage`); the loop owns the rest:
  - the learning-rate schedule (`Schedule`: optional linear warm-up, constant, then linear decay to 0 from
    decay_start), applied to every optimizer the stage lists;
  - timed checkpoints (checkpoint.pt written atomically, then the stage's release files and manifest), every
    checkpoint_minutes (elapsed >= the interval: the one comparison rule), at max_minutes, at the end and on
    SIGINT/SIGTERM (facefx.errors.interrupt_on_signals: `kill PID` saves and stops like Ctrl+C);
  - resume (`restore`: the stage's state, the step, the elapsed time and the random generators) with one rule for
    which options may change (`resume_config`);
  - the non-finite loss check, tqdm progress, losses.csv, sample sheets (samples/step_NNNNNN.png) and evaluations;
  - DDP under torchrun (`Dist`): every rank steps, rank 0 writes; gloo on CPUs, nccl on GPUs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from facefx.errors import FacefxError, interrupt_on_signals
from facefx.manifest import append_csv_row, atomic_write_bytes

CHECKPOINT = "checkpoint.pt"

# ---- which options a resumed run may change --------------------------------------------------------------------
# The rule, the same for every stage: a resumed run keeps its networks, data and seed (its checkpoint is of those);
# how it runs (RUN_OPTIONS), its schedule (SCHEDULE_OPTIONS) and the stage's loss weights (Stage.LOSS_SETTINGS) may
# change when given, and the manifest's config records the values in force. Any other option given with another
# value than the run's is refused, not silently ignored. The time limit, threads, device and checkpoint interval
# (RUN_NOW) are this invocation's, given or their defaults: a resumed run does not inherit its last --max-minutes
# (resume_options).
RUN_NOW = ("max_minutes", "threads", "device", "checkpoint_minutes")
RUN_OPTIONS = ("max_minutes", "threads", "device", "checkpoint_minutes", "sample_every", "eval_every", "log_every",
               "channels_last", "bf16")
SCHEDULE_OPTIONS = ("iters", "steps", "lr", "decay_start", "warmup")


def resume_config(saved: Any, given: dict[str, Any], loss_settings: Sequence[str] = ()) -> Any:
    """The config a resumed run trains with: `saved` (the run's own, a dataclass) with the options `given` on the
    command line (explicitly, by name) that may change on resume; an option that may not change and differs from
    the run's is refused with one line saying so."""
    may_change = set(RUN_OPTIONS) | set(SCHEDULE_OPTIONS) | set(loss_settings)
    fields = {f.name for f in dataclasses.fields(saved)}
    refused = sorted(k for k, v in given.items()
                     if k in fields and k not in may_change and not _same(getattr(saved, k), v))
    if refused:
        opts = ", ".join(f"--{k.replace('_', '-')} (the run's: {getattr(saved, k)!r})" for k in refused)
        raise FacefxError(f"{opts} cannot change on resume: a resumed run keeps its networks, data and seed; drop "
                          f"the option, or start a new run (--init warm-starts from this one)")
    return dataclasses.replace(saved, **{k: v for k, v in given.items() if k in fields and k in may_change})


def resume_options(values: dict[str, Any], typed: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run takes from this command line, for resume_config: the options typed, and RUN_NOW (the
    time limit, threads, device and checkpoint interval) as given or defaulted here. values: the command line's
    resolved config values (defaults and typed); typed: those typed."""
    return {**{k: values[k] for k in RUN_NOW if k in values}, **typed}


def _same(a: Any, b: Any) -> bool:
    """One value as a manifest stores it and as a command line gives it: paths as text, tuples as lists."""
    return json.dumps(a, default=str) == json.dumps(b, default=str)


# ---- schedule -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """lr(step) = lr * factor(step): linear warm-up over the first `warmup` fraction of iters (0: none), constant,
    then linear decay to 0 from decay_start (a fraction of iters) to the end (CycleGAN's schedule with warmup 0)."""

    iters: int
    lr: float
    decay_start: float = 0.5
    warmup: float = 0.0

    def factor(self, step: int) -> float:
        warm = int(self.iters * self.warmup)
        if step < warm:
            return (step + 1) / warm
        start = max(int(self.iters * self.decay_start), warm)
        return 1.0 if step < start else max(0.0, 1.0 - (step - start) / max(1, self.iters - start))

    def lr_at(self, step: int) -> float:
        return self.lr * self.factor(step)


# ---- processes ---------------------------------------------------------------------------------------------------
class Dist:
    """This process's place under torchrun (WORLD_SIZE > 1: DDP, nccl for CUDA, gloo otherwise), or alone."""

    def __init__(self, device: str = "cpu"):
        self.enabled = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        self.rank = dist.get_rank() if self.enabled else 0
        self.world = dist.get_world_size() if self.enabled else 1
        self.main = self.rank == 0

    def device(self, name: str) -> torch.device:
        """The torch device for --device `name`: under torchrun, cuda means this process's GPU (LOCAL_RANK)."""
        if name.startswith("cuda") and self.enabled:
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device(name)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """model in DDP (gradients averaged across processes), or as it is when alone."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def average_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients of parameters outside any DDP module (e.g. training-only adapters)."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def share(self, obj: Any) -> Any:
        """Rank 0's value of obj on every rank (e.g. the run folder's name)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's obj, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device: str, threads: int, seed: int) -> tuple[Dist, torch.device, int]:
    """The process's Dist, torch device and seed (seed + 1000 * rank: each process draws other samples); torch
    threads, cuDNN autotuning, and torch's and Python's generators seeded."""
    ddp = Dist(device)
    if threads:
        torch.set_num_threads(threads)
    dev = ddp.device(device)
    if dev.type == "cuda":
        if dev.index is not None:  # plain --device cuda means the current device
            torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels once
    seed = seed + 1000 * ddp.rank
    torch.manual_seed(seed)
    random.seed(seed)
    return ddp, dev, seed


# ---- the stage interface -----------------------------------------------------------------------------------------
class Stage:
    """What a stage gives the loop. Subclasses set `name` and `optimizers` and implement train_step, state,
    load_state and save; sample, evaluate and check are optional."""

    name = "stage"
    LOSS_SETTINGS: tuple[str, ...] = ()  # config fields a resumed run may change besides RUN/SCHEDULE_OPTIONS
    postfix_keys: tuple[str, ...] | None = None  # the losses shown on the progress bar (None: all)
    # (optimizer, multiple of the schedule's lr) pairs, e.g. a discriminator at twice the generator's rate
    optimizers: list[tuple[torch.optim.Optimizer, float]] = []

    def train_step(self, step: int) -> dict[str, float]:
        """One iteration (forward, backward, optimizer steps); the losses as floats."""
        raise NotImplementedError

    def state(self) -> dict:
        """Everything resume needs beyond step, time and the global generators: networks, optimizers, extras."""
        raise NotImplementedError

    def load_state(self, state: dict) -> None:
        raise NotImplementedError

    def save(self, run: Path, progress: dict, metrics: dict) -> None:
        """Release weights and the manifest (progress: step, iters, lr_factor, time, warnings), after
        checkpoint.pt (rank 0 only)."""
        raise NotImplementedError

    def sample(self, run: Path, step: int) -> dict | None:
        """Write samples/step_NNNNNN.png; may return metrics measured on the way (rank 0 only). None: no sheets."""
        return None

    def evaluate(self) -> dict | None:
        """Held-out metrics (rank 0 only). None: the stage has none during training."""
        return None

    def check(self, step: int, figures: dict[str, float]) -> list[str]:
        """Warnings about the latest figures: the losses averaged over the last log interval, or what a sample
        sheet measured (e.g. a discriminator that wins outright, outputs that no longer depend on the input)."""
        return []


@dataclass
class LoopSettings:
    """How long and how often: the schedule, log, sample, evaluation and checkpoint intervals, the time limit."""

    schedule: Schedule
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0: until the last iteration
    log_every: int = 50
    sample_every: int = 0  # 0: a sheet at the end only
    eval_every: int = 0  # 0: an evaluation at the end only

    @classmethod
    def from_config(cls, cfg: Any, iters: int | None = None) -> LoopSettings:
        """From a stage config that has (some of) these fields and lr, iters, decay_start, warmup."""
        get = lambda k, d: getattr(cfg, k, d)  # noqa: E731
        schedule = Schedule(iters if iters is not None else cfg.iters, cfg.lr, get("decay_start", 0.5),
                            get("warmup", 0.0))
        return cls(schedule, get("checkpoint_minutes", 5.0), get("max_minutes", 0.0), get("log_every", 50),
                   get("sample_every", 0), get("eval_every", 0))


@dataclass
class LoopResult:
    step: int
    stop_reason: str  # "done", "time limit" or "interrupted"
    elapsed_s: float  # training time, over every resume
    metrics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ---- checkpoints ---------------------------------------------------------------------------------------------------
def restore(stage: Stage, run: str | os.PathLike, device: torch.device) -> tuple[int, float]:
    """Load run/checkpoint.pt into the stage (and torch's and Python's generators, where saved); returns the
    step and the training time so far."""
    state = torch.load(Path(run) / CHECKPOINT, map_location=device, weights_only=True)
    stage.load_state(state)
    if "rng" in state:
        torch.set_rng_state(state["rng"]["torch"].cpu())
        random.setstate(state["rng"]["python"])
    return int(state["step"]), float(state["elapsed_s"])


def checkpoint(stage: Stage, run: Path, settings: LoopSettings, step: int, elapsed: float, metrics: dict,
               warnings: list[str], processes: int = 1) -> None:
    """checkpoint.pt (the stage's state, step, time, generators) written atomically, then the stage's files."""
    buf = io.BytesIO()
    torch.save({**stage.state(), "step": step, "elapsed_s": elapsed,
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}}, buf)
    atomic_write_bytes(run / CHECKPOINT, buf.getvalue())
    progress = {"step": step, "iters": settings.schedule.iters, "lr_factor": settings.schedule.factor(step),
                "elapsed_s": round(elapsed, 1), "s_per_iter": round(elapsed / max(step, 1), 3),
                "processes": processes, "warnings": warnings[-20:]}
    stage.save(run, progress, metrics)


# ---- the loop ------------------------------------------------------------------------------------------------------
class _Loop:
    """The state of one call of train(): counters, timers, the progress bar; one method per duty."""

    def __init__(self, stage: Stage, settings: LoopSettings, run: Path, ddp: Dist, step: int, elapsed: float,
                 progress: bool):
        self.stage, self.settings, self.run, self.ddp = stage, settings, run, ddp
        self.step, self.elapsed_before = step, elapsed
        self.t0 = self.last_ckpt = time.time()
        self.acc: dict[str, float] = {}
        self.metrics: dict = {}
        self.warnings: list[str] = []
        self.sampled_at = self.evaluated_at = -1
        self.bar = tqdm(total=settings.schedule.iters, initial=step, desc=stage.name, unit="it", dynamic_ncols=True,
                        disable=not (progress and ddp.main))

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.t0

    def set_lr(self) -> None:
        lr = self.settings.schedule.lr_at(self.step)
        for opt, multiple in self.stage.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr * multiple

    def iteration(self) -> None:
        self.set_lr()
        losses = self.stage.train_step(self.step)
        if not all(math.isfinite(v) for v in losses.values()):
            raise FacefxError(f"{self.stage.name}: a loss became non-finite at step {self.step} ({losses}); resume "
                              "from the last checkpoint with a lower --lr")
        self.step += 1
        self.bar.update(1)
        for k, v in losses.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        if self.step % self.settings.log_every == 0:
            self.log()
        if self.settings.sample_every and self.step % self.settings.sample_every == 0:
            self.sample()
        if self.settings.eval_every and self.step % self.settings.eval_every == 0:
            self.evaluate()

    def log(self) -> None:
        mean = {k: v / self.settings.log_every for k, v in self.acc.items()}
        self.acc = {}
        keys = self.stage.postfix_keys or tuple(mean)
        self.bar.set_postfix({k: f"{mean[k]:.3f}" for k in keys if k in mean})
        if self.ddp.main:
            append_csv_row(self.run / "losses.csv", {"step": self.step, "lr": self.settings.schedule.lr_at(self.step),
                                                     "elapsed_s": round(self.elapsed(), 1), **mean})
        for text in self.stage.check(self.step, mean):
            self.warn(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self.bar.write(f"WARNING {text}")

    def sample(self) -> None:
        if self.ddp.main and self.sampled_at != self.step:
            figures = self.stage.sample(self.run, self.step) or {}
            self.metrics.update(figures)
            self.sampled_at = self.step
            for text in self.stage.check(self.step, figures):
                self.warn(text)

    def evaluate(self) -> None:
        if self.ddp.main and self.evaluated_at != self.step:
            figures = self.stage.evaluate()
            if figures is not None:
                self.metrics.update(figures)
                self.bar.write(f"step {self.step}: {figures}")
            self.evaluated_at = self.step

    def checkpoint(self) -> None:
        if self.ddp.main:
            checkpoint(self.stage, self.run, self.settings, self.step, self.elapsed(), self.metrics, self.warnings,
                       self.ddp.world)
        self.last_ckpt = time.time()

    def out_of_time(self) -> bool:
        minutes = self.settings.max_minutes
        return bool(minutes) and (time.time() - self.t0) / 60 >= minutes

    def due(self) -> bool:
        """A timed checkpoint is due: the one comparison rule (>=) for every stage."""
        return time.time() - self.last_ckpt >= self.settings.checkpoint_minutes * 60


def train(stage: Stage, settings: LoopSettings, run: Path, ddp: Dist, step: int = 0, elapsed: float = 0.0,
          progress: bool = True) -> LoopResult:
    """Train `stage` from `step` to the schedule's last iteration (or max_minutes, or SIGINT/SIGTERM), then a last
    sample sheet, evaluation and checkpoint. The run folder exists (rank 0 writes into it)."""
    loop = _Loop(stage, settings, run, ddp, step, elapsed, progress)
    stop = "done"
    restore_signals = interrupt_on_signals()  # `kill` saves and stops, like Ctrl+C
    try:
        while loop.step < settings.schedule.iters:
            loop.iteration()
            if loop.out_of_time():  # the checkpoint below saves it
                stop = "time limit"
                break
            if loop.due():
                loop.checkpoint()
    except KeyboardInterrupt:
        stop = "interrupted"
        loop.bar.write("interrupted: saving a checkpoint")
    finally:
        restore_signals()
        loop.bar.close()
    loop.sample()
    loop.evaluate()
    loop.checkpoint()
    if ddp.main:
        figures = f": {loop.metrics}" if loop.metrics else ""
        print(f"{stop} at step {loop.step}/{settings.schedule.iters}{figures}; run folder {run}")
    ddp.barrier()
    return LoopResult(loop.step, stop, loop.elapsed(), loop.metrics, loop.warnings)
