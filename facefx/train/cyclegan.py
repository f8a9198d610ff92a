"""CycleGAN teacher training (Zhu et al. 2017): two face sets (domains A, B) -> a teacher artifact.

Output artifact (kind "teacher"), artifacts/teachers/<effect>/<NNNNN-desc>/:
  manifest.json       network specs, crop spec, pixel contract, config, progress, metrics
  G_AB.safetensors, G_BA.safetensors    release weights (fp32), refreshed at every checkpoint
  checkpoint.pt       resume state: all nets, optimizers, step, RNG (never committed)
  losses.csv, samples/step_NNNNNN.png   (rows: real A | fake B | rec A || real B | fake A | rec B)

Runs on CPU (bf16 autocast where it is faster), CUDA, and under torchrun with DDP (gloo or nccl).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facefx.errors import FacefxError
from facefx.manifest import (
    earlier_stages,
    hash_files,
    new_manifest,
    next_run_dir,
    read_manifest,
    run_stage,
    verify_files,
    write_manifest,
)
from facefx.options import option
from facefx.runtime.crop import CropSpec
from facefx.runtime.pixels import PIXEL_CONTRACT, nchw_to_bgr
from facefx.train import nets
from facefx.train.data import JitterSampler, load_domain, to_model
from facefx.train.loop import CHECKPOINT, Dist, LoopSettings, Schedule, Stage, restore, setup, train
from facefx.train.losses import ImagePool, lsgan
from facefx.train.sheets import grid, save_png

RELEASE_FILES = ("G_AB.safetensors", "G_BA.safetensors")
SNAPSHOT_FILES = RELEASE_FILES + ("D_A.safetensors", "D_B.safetensors")


# The loss settings a resumed run may change (train/teacher.py --resume) and a snapshot's lineage records per stage.
LOSS_SETTINGS = ("lambda_cycle", "lambda_idt", "lambda_shift", "shift_rotate", "shift_scale")


@dataclass
class TeacherConfig:
    effect: str = option(help="effect name (age, gender, style, ...)")
    a: list[str] = option(help="face set folder(s) of domain A (from train/prepare.py)", nargs="+")
    b: list[str] = option(help="face set folder(s) of domain B", nargs="+")
    root: str = option("artifacts/teachers", "where run folders are created")
    size: int = option(128, "training resolution in pixels", ge=32, le=1024)
    ngf: int = option(32, "generator base width", ge=1, le=1024)
    n_blocks: int = option(6, "generator residual blocks", ge=0, le=64)
    ndf: int = option(64, "discriminator base width", ge=1, le=1024)
    batch: int = option(1, "images per domain per iteration (per process)", ge=1)
    # total iterations; lr constant until decay_start, then linear decay to 0
    iters: int = option(40000, "total iterations (lr decays over the second half)", ge=1)
    decay_start: float = option(0.5, "fraction of the iterations before the lr starts to decay", ge=0, le=1, cli=False)
    lr: float = option(2e-4, "Adam learning rate", gt=0, le=1)
    beta1: float = option(0.5, "Adam beta1", ge=0, lt=1, cli=False)
    lambda_cycle: float = option(10.0, "cycle loss weight", ge=0)
    lambda_idt: float = option(0.5, "identity loss weight, times lambda-cycle", ge=0)
    # Shift equivariance: G(shift(x)) should equal shift(G(x)). A stride-2 ResNet generator is equivariant only
    # to shifts by multiples of 4 px and may redraw its strokes under a 1-3 px shift; a student distilled from
    # pairs of shifted faces then learns an average of those redrawings.
    lambda_shift: float = option(0.0, "shift-equivariance loss weight: G(shift(x)) = shift(G(x)) for 1-3 px shifts "
                                 "(0: off)", ge=0)
    # The same loss for small rotations and scale changes too (uniform in +-shift_rotate degrees and a scale factor in
    # 1 +- shift_scale, with a sub-pixel shift, bilinear resampling): the pairs' webcam augmentation rotates and
    # rescales faces, and the teacher redraws its strokes under those as under shifts. 0 and 0: integer shifts only.
    shift_rotate: float = option(0.0, "the shift loss's transform also rotates by up to +-DEG degrees (as the pairs' "
                                 "augmentation)", ge=0, le=180, metavar="DEG")
    shift_scale: float = option(0.0, "the shift loss's transform also rescales by a factor in 1 +- S (as the pairs' "
                                "augmentation)", ge=0, lt=1, metavar="S")
    pool: int = option(50, "image pool size of the discriminators (CycleGAN's history buffer)", ge=0, cli=False)
    device: str = option("cpu", "cpu or cuda")
    bf16: bool = option(True, "train in fp32 (bf16 autocast is faster on CPUs with AVX-512 BF16)", negate=True)
    channels_last: bool = option(False, "channels-last memory format (faster on some CPUs, slower on others: measure; "
                                 "on resume, kept unless given)", negatable=True)
    threads: int = option(0, "torch threads (0: torch's default)", ge=0, le=1024)
    checkpoint_minutes: float = option(5.0, "checkpoint interval", gt=0)
    sample_every: int = option(500, "sample grid interval (iterations)", ge=1)
    log_every: int = option(50, "loss log interval (iterations)", ge=1, cli=False)
    # stop (with a checkpoint) after this long; 0 = until iters
    max_minutes: float = option(0.0, "stop with a checkpoint after this long (0: never)", ge=0)
    seed: int = option(0, "random seed", ge=0, lt=2**63)
    desc: str = option("", "run folder description")
    # warm start: the networks of an earlier teacher (run or snapshot), new data and schedule
    init: str | None = option(None, "warm start from an earlier teacher's networks (run folder or snapshot such as "
                              "teachers/age): new face sets, new schedule from step 0")
    extra: dict = field(default_factory=dict)

    def generator_spec(self) -> dict:
        return {"type": "resnet_generator", "ngf": self.ngf, "n_blocks": self.n_blocks, "n_down": 2,
                "norm": "instance", "residual": True}

    def discriminator_spec(self) -> dict:
        return {"type": "patch_discriminator", "ndf": self.ndf, "n_layers": 3, "norm": "instance"}


def lr_factor(step: int, cfg: TeacherConfig) -> float:
    """Constant, then linear decay to zero from decay_start (CycleGAN's schedule; facefx.train.loop.Schedule)."""
    return Schedule(cfg.iters, cfg.lr, cfg.decay_start).factor(step)


class CycleGAN:
    """netG_A: A -> B (G_AB), netG_B: B -> A (G_BA), netD_A judges domain B images, netD_B domain A."""

    def __init__(self, cfg: TeacherConfig, device: torch.device):
        self.cfg = cfg
        self.netG_A = nets.build(cfg.generator_spec()).to(device)
        self.netG_B = nets.build(cfg.generator_spec()).to(device)
        self.netD_A = nets.build(cfg.discriminator_spec()).to(device)
        self.netD_B = nets.build(cfg.discriminator_spec()).to(device)
        for d in (self.netD_A, self.netD_B):
            for m in d.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, 0.02)
        if cfg.channels_last:
            for m in self.modules().values():
                m.to(memory_format=torch.channels_last)
        gparams = list(self.netG_A.parameters()) + list(self.netG_B.parameters())
        dparams = list(self.netD_A.parameters()) + list(self.netD_B.parameters())
        self.opt_G = torch.optim.Adam(gparams, lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.opt_D = torch.optim.Adam(dparams, lr=cfg.lr, betas=(cfg.beta1, 0.999))

    def modules(self) -> dict[str, nn.Module]:
        return {"G_AB": self.netG_A, "G_BA": self.netG_B, "D_A": self.netD_A, "D_B": self.netD_B}

    def state(self) -> dict:
        return {**{k: m.state_dict() for k, m in self.modules().items()},
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict()}

    def load_state(self, state: dict) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state[k])
        if "opt_G" in state:
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])


def _autocast(cfg: TeacherConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)


def shift_image(x: torch.Tensor, dy: int, dx: int, pad: int = 4) -> torch.Tensor:
    """x with its content moved down dy and right dx pixels (|dy|, |dx| <= pad), borders replicated."""
    h, w = x.shape[-2:]
    xp = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    return xp[..., pad - dy: pad - dy + h, pad - dx: pad - dx + w]


def warp_image(x: torch.Tensor, angle_deg: float, scale: float, dy: float,
               dx: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x rotated by angle_deg and scaled by `scale` about its centre, then moved down dy and right dx pixels
    (bilinear, borders replicated), and a (1, 1, H, W) mask of the pixels sampled from inside x."""
    h, w = x.shape[-2:]
    a = math.radians(angle_deg)
    # affine_grid maps output coordinates to input ones (normalized to [-1, 1]): the inverse of the warp.
    c, s = math.cos(a) / scale, math.sin(a) / scale
    tx, ty = -2 * dx / w, -2 * dy / h
    theta = torch.tensor([[c, s, c * tx + s * ty], [-s, c, -s * tx + c * ty]], dtype=torch.float32, device=x.device)
    grid = nn.functional.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    warped = nn.functional.grid_sample(x.float(), grid.expand(len(x), -1, -1, -1), mode="bilinear",
                                       padding_mode="border", align_corners=False).to(x.dtype)
    inside = nn.functional.grid_sample(torch.ones(1, 1, h, w, device=x.device), grid, mode="bilinear",
                                       padding_mode="zeros", align_corners=False) > 0.999
    return warped, inside


def shift_consistency(G: nn.Module, x: torch.Tensor, y: torch.Tensor, rng: random.Random,
                      max_shift: int = 3, margin: int = 8, rotate: float = 0.0, scale: float = 0.0) -> torch.Tensor:
    """L1 between G(T(x)) and T(y), y = G(x), away from the border (where replication differs).

    T: one random shift of 1 to max_shift pixels that is not a multiple of the generator's stride 4; with rotate or
    scale, a random similarity instead (rotation in +-rotate degrees, scale in 1 +- scale, shift in +-max_shift px,
    bilinear), compared only where T sampled inside the image.
    """
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    if rotate or scale:
        params = (rng.uniform(-rotate, rotate), 1 + rng.uniform(-scale, scale),
                  rng.uniform(-max_shift, max_shift), rng.uniform(-max_shift, max_shift))
        both, inside = warp_image(torch.cat([x, y.to(x.dtype)]), *params)  # one grid and mask for input and output
        x_t, y_t = both[: len(x)], both[len(x):]
        weight = inside[inner].float()
        diff = (G(x_t)[inner].float() - y_t[inner].float()).abs() * weight
        return diff.sum() / (weight.sum() * diff.shape[0] * diff.shape[1]).clamp_min(1)
    dy, dx = 0, 0
    while dy == 0 and dx == 0:
        dy, dx = rng.randint(-max_shift, max_shift), rng.randint(-max_shift, max_shift)
    y_shifted = G(shift_image(x, dy, dx))
    return nn.functional.l1_loss(y_shifted[inner].float(), shift_image(y, dy, dx)[inner].float())


def train_step(model: CycleGAN, G_A: nn.Module, G_B: nn.Module, D_A: nn.Module, D_B: nn.Module,
               real_A: torch.Tensor, real_B: torch.Tensor, pools: tuple[ImagePool, ImagePool],
               cfg: TeacherConfig, device: torch.device, rng: random.Random) -> dict[str, float]:
    """One CycleGAN iteration: generators first (discriminators frozen), then both discriminators. rng draws the
    shifts of the shift-equivariance loss.

    G_A/G_B/D_A/D_B may be DDP wrappers of model's nets; the frozen-D pass uses the bare modules.
    """
    lam_c, lam_i = cfg.lambda_cycle, cfg.lambda_cycle * cfg.lambda_idt
    # ---- generators
    for d in (model.netD_A, model.netD_B):
        d.requires_grad_(False)
    with _autocast(cfg, device):
        fake_B = G_A(real_A)
        rec_A = G_B(fake_B)
        fake_A = G_B(real_B)
        rec_B = G_A(fake_A)
        idt_A = G_A(real_B)  # G_A should leave B images alone
        idt_B = G_B(real_A)
        loss_G_A = lsgan(model.netD_A(fake_B), True)
        loss_G_B = lsgan(model.netD_B(fake_A), True)
        if cfg.lambda_shift:
            warp = dict(rotate=cfg.shift_rotate, scale=cfg.shift_scale)
            loss_shift = cfg.lambda_shift * (shift_consistency(G_A, real_A, fake_B, rng, **warp)
                                             + shift_consistency(G_B, real_B, fake_A, rng, **warp))
        else:
            loss_shift = torch.zeros((), device=device)
    l1 = nn.functional.l1_loss
    loss_cycle_A = l1(rec_A.float(), real_A) * lam_c
    loss_cycle_B = l1(rec_B.float(), real_B) * lam_c
    loss_idt_A = l1(idt_A.float(), real_B) * lam_i
    loss_idt_B = l1(idt_B.float(), real_A) * lam_i
    loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B + loss_shift
    model.opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    model.opt_G.step()
    # ---- discriminators
    for d in (model.netD_A, model.netD_B):
        d.requires_grad_(True)
    fake_B_pool = pools[0].query(fake_B.float())
    fake_A_pool = pools[1].query(fake_A.float())
    with _autocast(cfg, device):
        loss_D_A = 0.5 * (lsgan(D_A(real_B), True) + lsgan(D_A(fake_B_pool), False))
        loss_D_B = 0.5 * (lsgan(D_B(real_A), True) + lsgan(D_B(fake_A_pool), False))
    model.opt_D.zero_grad(set_to_none=True)
    (loss_D_A + loss_D_B).backward()
    model.opt_D.step()
    losses = dict(G_A=loss_G_A, G_B=loss_G_B, cycle_A=loss_cycle_A, cycle_B=loss_cycle_B, idt_A=loss_idt_A,
                  idt_B=loss_idt_B, D_A=loss_D_A, D_B=loss_D_B, shift=loss_shift)
    return {k: float(v.detach()) for k, v in losses.items()}


# ---- run folder ------------------------------------------------------------------------------------
def _teacher_manifest(cfg: TeacherConfig, crop: dict, progress: dict, metrics: dict) -> dict:
    m = new_manifest("teacher", effect=cfg.effect, parent=list(cfg.a) + list(cfg.b),
                     network={"G_AB": cfg.generator_spec(), "G_BA": cfg.generator_spec(),
                              "D_A": cfg.discriminator_spec(), "D_B": cfg.discriminator_spec()},
                     resolution=cfg.size, crop=crop, pixels=PIXEL_CONTRACT,
                     domains={"A": list(cfg.a), "B": list(cfg.b)},
                     config=dataclasses.asdict(cfg), progress=progress)
    m["metrics"] = metrics
    return m


def _check_crops(manifests: list[dict]) -> dict:
    crops = {json_key(m["crop"]) for m in manifests}
    if len(crops) != 1:
        raise FacefxError("the face sets were cropped with different crop specs; prepare them with one facefx version")
    crop = dict(manifests[0]["crop"])
    return crop


def json_key(d: dict) -> str:
    import json
    return json.dumps({k: v for k, v in d.items() if k != "size"}, sort_keys=True)


def _sample_sheet(model: CycleGAN, fixed_A: torch.Tensor, fixed_B: torch.Tensor, cfg,
                  device) -> tuple[np.ndarray, float]:
    """Grid on held-out faces and the input-dependence ratio of fake_B (collapse check)."""
    rows = []
    with torch.no_grad(), _autocast(cfg, device):
        model.netG_A.eval(), model.netG_B.eval()
        fake_B = model.netG_A(fixed_A).float()
        rec_A = model.netG_B(fake_B).float()
        fake_A = model.netG_B(fixed_B).float()
        rec_B = model.netG_A(fake_A).float()
        model.netG_A.train(), model.netG_B.train()
    pieces = [t.cpu().numpy() for t in (fixed_A, fake_B, rec_A, fixed_B, fake_A, rec_B)]
    imgs = [nchw_to_bgr(p) for p in pieces]
    for i in range(len(fixed_A)):
        rows.append([im[i] for im in imgs])
    spread_in = torch.cdist(fixed_A.flatten(1), fixed_A.flatten(1)).mean()
    spread_out = torch.cdist(fake_B.flatten(1), fake_B.flatten(1)).mean()
    return grid(rows, ["real A", "fake B", "rec A", "real B", "fake A", "rec B"]), float(spread_out / spread_in)


class TeacherStage(Stage):
    """A CycleGAN teacher for the training loop (facefx.train.loop): its networks, step, sample sheets and files."""

    LOSS_SETTINGS = LOSS_SETTINGS
    postfix_keys = ("G_A", "G_B", "cycle_A", "D_A", "D_B")

    def __init__(self, cfg: TeacherConfig, ddp: Dist, device: torch.device, seed: int):
        self.cfg, self.ddp, self.device = cfg, ddp, device
        self.name = f"teacher {cfg.effect}"
        man_A, train_A = load_domain(cfg.a, cfg.size, "train")
        man_B, train_B = load_domain(cfg.b, cfg.size, "train")
        _, test_A = load_domain(cfg.a, cfg.size, "test")
        _, test_B = load_domain(cfg.b, cfg.size, "test")
        self.crop = CropSpec.from_dict(_check_crops(man_A + man_B)).with_size(cfg.size).to_dict()
        gen = torch.Generator().manual_seed(seed)
        self.sample_A, self.sample_B = JitterSampler(train_A, cfg.size, gen), JitterSampler(train_B, cfg.size, gen)
        n_fixed = 6
        self.fixed_A = to_model(test_A[torch.linspace(0, len(test_A) - 1, n_fixed).long()]).to(device)
        self.fixed_B = to_model(test_B[torch.linspace(0, len(test_B) - 1, n_fixed).long()]).to(device)
        self.model = CycleGAN(cfg, device)
        self.optimizers = [(self.model.opt_G, 1.0), (self.model.opt_D, 1.0)]
        self.pools = (ImagePool(cfg.pool, random.Random(seed)), ImagePool(cfg.pool, random.Random(seed + 1)))
        self.shift_rng = random.Random(seed + 2)
        self.d_low_streak = 0
        self.nets: list[nn.Module] = []

    def wrap(self) -> None:
        """The networks in DDP under torchrun (after any weights are loaded)."""
        m = self.model
        self.nets = [self.ddp.wrap(n, self.device) for n in (m.netG_A, m.netG_B, m.netD_A, m.netD_B)]

    def train_step(self, step: int) -> dict[str, float]:
        real_A = self.sample_A(self.cfg.batch).to(self.device)
        real_B = self.sample_B(self.cfg.batch).to(self.device)
        if self.cfg.channels_last:
            real_A = real_A.contiguous(memory_format=torch.channels_last)
            real_B = real_B.contiguous(memory_format=torch.channels_last)
        return train_step(self.model, *self.nets, real_A, real_B, self.pools, self.cfg, self.device, self.shift_rng)

    def state(self) -> dict:
        return {"model": self.model.state()}

    def load_state(self, state: dict) -> None:
        self.model.load_state(state["model"])

    def sample(self, run: Path, step: int) -> dict:
        sheet, ratio = _sample_sheet(self.model, self.fixed_A, self.fixed_B, self.cfg, self.device)
        save_png(run / "samples" / f"step_{step:06d}.png", sheet)
        return {"output_spread_ratio": round(ratio, 4)}

    def check(self, step: int, figures: dict[str, float]) -> list[str]:
        out = []
        if "D_A" in figures:  # a discriminator that wins outright for long stops teaching the generator
            self.d_low_streak = self.d_low_streak + 1 if min(figures["D_A"], figures["D_B"]) < 0.02 else 0
            if self.d_low_streak == 10:
                out.append(f"step {step}: a discriminator loss stayed below 0.02 for {10 * self.cfg.log_every} "
                           "iterations: training may have collapsed")
        ratio = figures.get("output_spread_ratio")
        if ratio is not None and ratio < 0.15:
            out.append(f"step {step}: fake_B barely depends on the input (spread ratio {ratio:.2f}): mode collapse")
        return out

    def save(self, run: Path, progress: dict, metrics: dict) -> None:
        """Release weights (G_AB, G_BA), then the manifest; judge metrics written by other tools are kept."""
        for name, net in (("G_AB", self.model.netG_A), ("G_BA", self.model.netG_B)):
            nets.save_weights(net, run / f"{name}.safetensors")
        progress = {**progress, "images_seen_per_domain": progress["step"] * self.cfg.batch * self.ddp.world}
        manifest = _teacher_manifest(self.cfg, self.crop, progress, metrics)
        if (run / "manifest.json").exists():
            manifest["metrics"] = {**read_manifest(run).get("metrics", {}), **metrics}
        manifest["files"] = hash_files(run, list(RELEASE_FILES))
        write_manifest(run, manifest)


def _check_warp_options(cfg: TeacherConfig) -> None:
    if (cfg.shift_rotate or cfg.shift_scale) and not cfg.lambda_shift:
        raise FacefxError("--shift-rotate/--shift-scale shape the shift loss, which is off: add --lambda-shift W, "
                          "e.g. 10")
    if not (0 <= cfg.shift_rotate <= 45 and 0 <= cfg.shift_scale <= 0.5):
        raise FacefxError(f"--shift-rotate {cfg.shift_rotate} / --shift-scale {cfg.shift_scale}: use 0 to 45 degrees "
                          f"and 0 to 0.5 (the pairs' augmentation: 8 and 0.07)")


def train_teacher(cfg: TeacherConfig, resume: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Train (or resume) a teacher; returns the run folder. Stops at cfg.iters or after cfg.max_minutes."""
    _check_warp_options(cfg)
    ddp, device, seed = setup(cfg.device, cfg.threads, cfg.seed)
    stage = TeacherStage(cfg, ddp, device, seed)
    step, elapsed = 0, 0.0
    run = next_run_dir(Path(cfg.root) / cfg.effect, cfg.desc or f"{cfg.size}px-ngf{cfg.ngf}-b{cfg.n_blocks}")
    if cfg.init and not resume:
        _init_from(stage.model, Path(cfg.init), cfg)
    if resume:
        step, elapsed = _restore(stage, Path(resume), device)
        if (Path(resume) / CHECKPOINT).is_file():
            run = Path(resume)  # continue in place; a committed snapshot instead seeds a new run folder
    run = Path(ddp.share(str(run)))  # every rank uses rank 0's folder name
    if ddp.main:
        (run / "samples").mkdir(parents=True, exist_ok=True)
    ddp.barrier()
    stage.wrap()
    train(stage, LoopSettings.from_config(cfg), run, ddp, step, elapsed, progress)
    return run


def _restore(stage: TeacherStage, run: Path, device: torch.device) -> tuple[int, float]:
    """From checkpoint.pt (full state) or, on a new machine, a committed fp16 snapshot (weights + step)."""
    if (run / CHECKPOINT).is_file():
        return restore(stage, run, device)
    manifest = read_manifest(run, kind="teacher")
    _load_snapshot_networks(stage.model, run, "cannot resume")
    return int(manifest["progress"]["step"]), float(manifest["progress"]["elapsed_s"])


def _load_snapshot_networks(model: CycleGAN, folder: Path, action: str) -> None:
    """The four networks from a committed snapshot's fp16 safetensors (no optimizer state)."""
    missing = [f for f in SNAPSHOT_FILES if not (folder / f).is_file()]
    if missing:
        raise FacefxError(f"{action} {folder}: no checkpoint.pt and no snapshot ({', '.join(missing)} missing)")
    for name, net in model.modules().items():
        nets.load_weights(net, folder / f"{name}.safetensors")


def _init_from(model: CycleGAN, folder: Path, cfg: TeacherConfig) -> None:
    """Warm start: the four networks of an earlier teacher (its run folder or committed snapshot), not its
    optimizers, step or schedule. E.g. a teacher re-trained on re-prepared faces (another crop zoom) starts from
    what it had learned instead of from noise."""
    manifest = read_manifest(folder, kind="teacher")
    ours = {"G_AB": cfg.generator_spec(), "G_BA": cfg.generator_spec(),
            "D_A": cfg.discriminator_spec(), "D_B": cfg.discriminator_spec()}
    theirs = {k: manifest.get("network", {}).get(k) for k in ours}
    if theirs != ours:
        raise FacefxError(f"--init {folder}: its networks {theirs} differ from this run's {ours}; pass the same "
                          "--ngf/--n-blocks/--ndf or drop --init")
    if (folder / "checkpoint.pt").is_file():
        state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
        model.load_state({k: state[k] for k in ours})
        return
    verify_files(folder, manifest)
    _load_snapshot_networks(model, folder, "--init")


def config_from_run(run: str | os.PathLike) -> TeacherConfig:
    manifest = read_manifest(run, kind="teacher")
    return TeacherConfig(**manifest["config"])


def load_generator(run: str | os.PathLike, direction: str = "AB", device: str = "cpu") -> tuple[nn.Module, dict]:
    """A teacher generator rebuilt from its folder alone (manifest spec + safetensors), in eval mode."""
    return nets.load_from_artifact(run, f"G_{direction}", kind="teacher", device=device)


def snapshot(run: str | os.PathLike, dest: str | os.PathLike, judge: bool = True) -> Path:
    """Compact, committable copy of a teacher: fp16 G and D weights, manifest (step, schedule, and the judge's
    measure of the effect on held-out faces); no optimizer state."""
    run, dest = Path(run), Path(dest)
    manifest = read_manifest(run, kind="teacher")
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    names = [f.removesuffix(".safetensors") for f in SNAPSHOT_FILES]
    manifest["lineage"] = teacher_lineage(manifest)
    nets.save_snapshot(dest, manifest, {n: (manifest["network"][n], state[n]) for n in names}, source=run)
    if judge:  # measured on the snapshot as committed (fp16 weights)
        manifest.setdefault("metrics", {})["judge"] = judge_teacher(dest, manifest)
        write_manifest(dest, manifest)
    return dest


def teacher_lineage(manifest: dict) -> list[dict]:
    """How a teacher came to be, oldest first: the lineage of the teacher it was warm-started from (--init), when
    that folder is readable here, then this run (its command, iterations, batch, time and device)."""
    cfg = manifest.get("config", {})
    this = {**run_stage(manifest), "losses": {k: cfg.get(k) for k in LOSS_SETTINGS if k in cfg}}
    return earlier_stages(cfg.get("init"), "teacher") + [this]


def judge_teacher(folder: str | os.PathLike, manifest: dict) -> dict:
    """The effect's judge on each direction's held-out faces, before and after the teacher (fp16 weights as
    committed, run in fp32). {"skipped": reason} when the effect has no judge or no held-out faces are found."""
    from facefx.train.judges import EFFECT_JUDGE, judge_dir, judge_generator, load_judge

    effect = manifest["effect"]
    if effect not in EFFECT_JUDGE or not (judge_dir(EFFECT_JUDGE[effect]) / "manifest.json").is_file():
        return {"skipped": f"no judge for effect {effect!r} (benchmarks/judges.py trains them)"}
    judge = load_judge(EFFECT_JUDGE[effect]).for_crop(manifest["crop"])
    out = {}
    for direction, sets in (("AB", manifest["domains"]["A"]), ("BA", manifest["domains"]["B"])):
        try:
            _, faces = load_domain(sets, manifest["resolution"], "test")
        except FacefxError as e:
            return {"skipped": f"held-out faces unavailable: {e}"}
        if len(faces) == 0:
            return {"skipped": f"no held-out faces in {', '.join(sets)}"}
        net, _ = load_generator(folder, direction)
        out[direction] = judge_generator(judge, effect, net.float(), to_model(faces), direction)
    return out
