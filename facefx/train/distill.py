"""Distillation: a teacher labels real faces (pairs), and a compact Pix2Pix student learns from the pairs.

pairs:   teacher artifact -> artifacts/pairs/<effect>/<NNNNN-desc>/ (kind "pairs")
         inputs.npy, targets.npy (N, S, S, 3) uint8 RGB training pairs (with webcam-like augmentations),
         test_inputs.npy, test_targets.npy from held-out faces, manifest (teacher, counts, sharpness, drops)
student: pairs artifact -> artifacts/students/<effect>/<NNNNN-desc>/ (kind "student")
         G.safetensors (+ checkpoint.pt for resume), samples/, losses.csv, manifest (spec, crop, metrics)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from facefx.errors import FacefxError
from facefx.manifest import (
    earlier_stages,
    hash_files,
    new_manifest,
    next_run_dir,
    read_manifest,
    run_stage,
    staged_dir,
    write_manifest,
)
from facefx.metrics import psnr, sharpness, ssim
from facefx.options import option
from facefx.runtime.crop import CropSpec, inner_face_mask
from facefx.runtime.pixels import PIXEL_CONTRACT, nchw_to_rgb, rgb_to_nchw
from facefx.train import nets
from facefx.train.cyclegan import load_generator
from facefx.train.data import read_crops
from facefx.train.loop import Dist, LoopSettings, Stage, restore, setup, train
from facefx.train.losses import lsgan
from facefx.train.prepare import load_faces
from facefx.train.sheets import grid, save_png


# ---- webcam-like augmentation ------------------------------------------------------------------------------
def augment_webcam(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a live crop looks like: small shift/rotation/scale of the framing, exposure and white balance,
    blur, sensor noise and JPEG. uint8 RGB (S, S, 3) -> same."""
    s = rgb.shape[0]
    angle = rng.uniform(-8, 8)
    scale = rng.uniform(0.93, 1.07)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * s
    out = cv2.warpAffine(rgb, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    out = out * rng.uniform(0.75, 1.25) * rng.uniform(0.92, 1.08, 3) + rng.uniform(-15, 15)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.3))
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(1, 6), out.shape)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


# ---- teacher labelling ---------------------------------------------------------------------------------------
def teacher_view(x: torch.Tensor, res: int) -> torch.Tensor:
    """The input as a teacher working at `res` px sees it (antialiased bilinear resize; as is at that size): what
    the pairs' targets and the teacher's features for distillation are computed from."""
    if x.shape[-1] == res:
        return x
    return F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False)


class TeacherLabeler:
    """Runs a teacher generator at its own resolution and returns targets at the student's resolution.

    Where the teacher is smaller than the student, target = input + upsample(teacher(x_low) - x_low): the
    teacher's change at low resolution, the input's detail at full resolution. `strength` scales the change
    (an effect-intensity knob: 2 doubles what the teacher adds, wrinkles, make-up; 1 is the teacher as is).
    """

    def __init__(self, teacher_run: str | os.PathLike, direction: str = "AB", device: str = "cpu",
                 strength: float = 1.0, face_mask: bool = False):
        if not 0 < strength <= 4:
            raise FacefxError(f"strength {strength}: use a value in (0, 4]; 1 is the teacher's own change")
        self.net, self.manifest = load_generator(teacher_run, direction, device)
        self.res = int(self.manifest["resolution"])
        self.device = device
        self.strength = float(strength)
        self.face_mask = face_mask  # confine the change to the inner face (facefx.runtime.crop.inner_face_mask)
        self.crop = CropSpec.from_dict(self.manifest["crop"])
        self._masks: dict[int, torch.Tensor] = {}

    def target_rule(self, size: int) -> str:
        """How a target is made from an input, in words (written into the pairs manifest)."""
        k = "" if self.strength == 1 else f"{self.strength:g} * "
        if self.face_mask:
            k += "inner_face_mask * "
        if self.res == size:
            return f"input + {k}(teacher(input) - input)" if k else "teacher(input)"
        return f"input + {k}upsample(teacher(x_low) - x_low)"

    @torch.no_grad()
    def __call__(self, inputs_rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, S, S, 3) -> uint8 RGB (N, S, S, 3) targets."""
        x = torch.from_numpy(rgb_to_nchw(inputs_rgb)).to(self.device)  # (N, 3, S, S) RGB [-1, 1]
        s = x.shape[-1]
        low = teacher_view(x, self.res)
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16):
            fake = self.net(low).float()
        delta = (fake - low) * self.strength
        if s != self.res:
            delta = F.interpolate(delta, size=(s, s), mode="bicubic", align_corners=False)
        if self.face_mask:
            if s not in self._masks:
                self._masks[s] = torch.from_numpy(inner_face_mask(self.crop.with_size(s))).to(self.device)
            delta = delta * self._masks[s]
        return nchw_to_rgb((x + delta).clamp(-1, 1).cpu().numpy())


@dataclass
class PairsConfig:
    teacher: str = option(help="teacher artifact folder (train/teacher.py run or teachers/<effect>)")
    # AB, BA, or swap (A -> B and B -> A in one student)
    direction: str = option("AB", "which teacher generator labels: AB (domain A faces), BA (B faces), or swap (both: "
                            "one student that turns each domain into the other, e.g. a gender swap)",
                            choices=("AB", "BA", "swap"))
    faces: list[str] | None = option(None, "face sets to label", nargs="+", none="the teacher's source domain")
    root: str = option("artifacts/pairs", "where pairs artifacts are written")
    size: int = option(256, "student resolution (pairs are made at this size)", ge=32, le=1024)
    augment: int = option(2, "webcam-like augmented variants per face", ge=0, le=100)
    # scale of the teacher's change in the targets (TeacherLabeler)
    strength: float = option(1.0, "scale of the teacher's change in the targets (effect intensity; 1: the teacher as "
                             "is)", gt=0, le=10)
    # keep the teacher's change to the inner face: hair and background stay the input's
    face_mask: bool = option(False, "confine the teacher's change to the inner face (brows to chin, a soft ellipse "
                             "from the crop geometry): hair, background and neck keep the input's pixels, for a "
                             "teacher that also tints or smears around the face")
    batch: int = option(16, "faces per teacher batch", ge=1)
    judge_filter: bool = option(True, "keep pairs the judge says the teacher failed on", negate=True,
                                flag="--no-judge-filter")
    seed: int = option(0, "augmentation seed", ge=0, lt=2**63)
    max_faces: int = option(0, "label at most this many faces (0: all)", ge=0)
    # where the teacher runs (cpu or cuda); augmentation and decoding stay on the CPU
    device: str = option("cpu", "where the teacher runs: cpu or cuda")


# A judge-based check that the teacher really did its job on a pair (the judge: facefx.train.judges.EFFECT_JUDGE):
# (effect, direction) -> (pass test, description).
JUDGE_CHECKS: dict[tuple[str, str], tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str]] = {
    ("age", "AB"): (lambda before, after: after - before >= 5.0, "age judge saw < 5 years of ageing"),
    ("age", "BA"): (lambda before, after: before - after >= 5.0, "age judge saw < 5 years of rejuvenation"),
    ("gender", "AB"): (lambda before, after: after >= 0.5, "gender judge still saw a man"),
    ("gender", "BA"): (lambda before, after: after < 0.5, "gender judge still saw a woman"),
    ("style", "AB"): (lambda before, after: after >= 0.5, "anime judge did not see a drawing"),
}


def _judge_check(effect: str, direction: str, crop: dict):
    """The judge check for this effect (taking crops of `crop`'s geometry), or None when no judge is installed
    (reported in the manifest)."""
    check = JUDGE_CHECKS.get((effect, direction))
    if check is None:
        return None
    try:
        from facefx.train.judges import EFFECT_JUDGE, load_judge

        return load_judge(EFFECT_JUDGE[effect]).for_crop(crop), check[0], check[1]
    except (ImportError, FacefxError):
        return None


def pair_jobs(direction: str, teacher_m: dict, faces: list[str] | None) -> list[tuple[str, list[str]]]:
    """(teacher generator direction, face sets it labels) for a pairs direction: AB, BA, or swap (both: a student
    that turns each domain into the other, e.g. men -> women and women -> men in one model)."""
    if direction not in ("AB", "BA", "swap"):
        raise FacefxError(f"direction {direction!r}: use AB, BA or swap")
    if direction == "swap":
        if faces:
            raise FacefxError("--faces with --direction swap is ambiguous (which generator labels them?); "
                              "drop --faces to label the teacher's two domains")
        return [("AB", list(teacher_m["domains"]["A"])), ("BA", list(teacher_m["domains"]["B"]))]
    return [(direction, list(faces or teacher_m["domains"]["A" if direction == "AB" else "B"]))]


def make_pairs(cfg: PairsConfig, progress: bool = True) -> Path:
    """Label faces with the teacher; returns the pairs artifact folder.

    Under torchrun the batches are dealt out to the processes in turn (batch i to rank i mod world), each writing
    its own rows of the arrays; every batch's augmentation is drawn from (seed, split, job, batch start), so the
    pairs are the same whatever the number of processes."""
    ddp = Dist(cfg.device)
    device = str(ddp.device(cfg.device))
    teacher_m = read_manifest(cfg.teacher, kind="teacher")
    effect = teacher_m["effect"]
    jobs = [(d, sets, TeacherLabeler(cfg.teacher, d, device, strength=cfg.strength, face_mask=cfg.face_mask),
             _judge_check(effect, d, teacher_m["crop"]) if cfg.judge_filter else None)
            for d, sets in pair_jobs(cfg.direction, teacher_m, cfg.faces)]
    out = Path(ddp.share(str(next_run_dir(Path(cfg.root) / effect, f"{cfg.direction}-{cfg.size}px"))))
    counts: dict[str, int] = {}
    drops: dict[str, int] = {}
    sharp: list[float] = []
    with staged_dir(out) if ddp.main else contextlib.nullcontext() as staged:
        tmp = Path(ddp.share(str(staged)))
        for split in ("train", "test"):
            counts[split], split_drops, split_sharp = _label_split(cfg, jobs, split, tmp, ddp, progress)
            sharp += split_sharp
            for why, n in split_drops.items():
                drops[why] = drops.get(why, 0) + n
        if counts["train"] == 0:
            raise FacefxError("the judge rejected every pair: the teacher has not learned the effect yet; "
                              "train it longer or pass --no-judge-filter")
        if ddp.main:
            write_manifest(tmp, _pairs_manifest(cfg, teacher_m, jobs, counts, drops, sharp, tmp))
        ddp.barrier()  # every process has written its rows before the folder moves into place
    ddp.barrier()  # and the folder is in place before any process returns it
    return out


def _label_split(cfg: PairsConfig, jobs: list, split: str, tmp: Path, ddp: Dist,
                 progress: bool) -> tuple[int, dict[str, int], list[float]]:
    """Label one split's faces into tmp/[test_]{inputs,targets}.npy (this process's batches); the pairs kept,
    the pairs the judge dropped (by reason) and target/input sharpness ratios, over every process."""
    job_paths = []
    for _, sets, _, _ in jobs:
        paths = [p for f in sets for p in load_faces(f, split)[1]]
        if cfg.max_faces:
            paths = paths[: cfg.max_faces if split == "train" else max(2, cfg.max_faces // 4)]
        job_paths.append(paths)
    variants = 1 + (cfg.augment if split == "train" else 0)
    n = sum(len(p) for p in job_paths) * variants
    prefix = "" if split == "train" else "test_"
    names = (f"{prefix}inputs.npy", f"{prefix}targets.npy")
    if ddp.main:
        for name in names:
            np.lib.format.open_memmap(tmp / name, "w+", np.uint8, (n, cfg.size, cfg.size, 3)).flush()
    ddp.barrier()
    inputs, targets = (np.load(tmp / name, mmap_mode="r+") for name in names)
    keep = np.ones(n, bool)
    drops: dict[str, int] = {}
    sharp: list[float] = []
    k, batch_no = 0, 0
    for job_no, ((d, _, labeler, judge), paths) in enumerate(zip(jobs, job_paths)):
        for start in tqdm(range(0, len(paths), cfg.batch), desc=f"pairs {labeler.manifest['effect']} {d} {split}",
                          unit="batch", disable=not (progress and ddp.main)):
            size = min(cfg.batch, len(paths) - start) * variants
            if batch_no % ddp.world == ddp.rank:
                rng = np.random.default_rng([cfg.seed, split == "test", job_no, start])
                faces = read_crops(paths[start:start + cfg.batch], cfg.size)[..., ::-1]  # BGR -> RGB
                batch = np.ascontiguousarray(np.stack(
                    [f for face in faces for f in [face] + [augment_webcam(face, rng) for _ in range(variants - 1)]]))
                labels = labeler(batch)
                inputs[k:k + size], targets[k:k + size] = batch, labels
                if judge is not None and split == "train":
                    model, passes, why = judge
                    ok = passes(model.predict(torch.from_numpy(rgb_to_nchw(batch))),
                                model.predict(torch.from_numpy(rgb_to_nchw(labels))))
                    keep[k:k + size] = ok
                    drops[why] = drops.get(why, 0) + int((~ok).sum())
                sharp += [sharpness(t) / max(sharpness(i), 1e-6) for i, t in zip(batch[::4], labels[::4])]
            k, batch_no = k + size, batch_no + 1
    inputs.flush(), targets.flush()
    del inputs, targets
    gathered = ddp.gather((keep, drops, sharp))  # also: every process has flushed its rows
    keep = np.logical_and.reduce([g[0] for g in gathered])
    drops = {why: sum(g[1].get(why, 0) for g in gathered) for why in {w for g in gathered for w in g[1]}}
    if ddp.main and not keep.all():  # rewrite without the dropped pairs
        for name in names:
            np.save(tmp / name, np.load(tmp / name)[keep])
    return int(keep.sum()), drops, [s for g in gathered for s in g[2]]


def _pairs_manifest(cfg: PairsConfig, teacher_m: dict, jobs: list, counts: dict, drops: dict, sharp: list[float],
                    folder: Path) -> dict:
    labeler = jobs[0][2]
    manifest = new_manifest(
        "pairs", effect=teacher_m["effect"], parent=cfg.teacher, direction=cfg.direction,
        face_sets=[f for _, sets, _, _ in jobs for f in sets],
        face_sets_by_direction={d: sets for d, sets, _, _ in jobs},
        resolution=cfg.size, teacher_resolution=labeler.res,
        target_rule=labeler.target_rule(cfg.size), strength=cfg.strength,
        crop=CropSpec.from_dict(teacher_m["crop"]).with_size(cfg.size).to_dict(), pixels=PIXEL_CONTRACT,
        config=dataclasses.asdict(cfg),
        counts={**counts, "dropped": drops, "judge": "on" if any(j[3] for j in jobs) else "unavailable or off"})
    manifest["metrics"] = {"target_sharpness_ratio_median": round(float(np.median(sharp)), 3),
                           "target_sharpness_ratio_p10": round(float(np.percentile(sharp, 10)), 3)}
    manifest["files"] = hash_files(folder, ["inputs.npy", "targets.npy", "test_inputs.npy", "test_targets.npy"])
    return manifest


# ---- student ----------------------------------------------------------------------------------------------------
@dataclass
class StudentConfig:
    pairs: str = option(help="pairs artifact folder (distill/pairs.py)")
    root: str = option("artifacts/students", "where student runs are created")
    widths: tuple[int, ...] = option((8, 16, 32, 64, 128), "channels per U-Net level, comma-separated", split=",",
                                     ge=1, le=4096)
    n_blocks: int = option(2, "bottleneck residual blocks", ge=0, le=64)
    norm: str = option("batch", "normalization (folded at export)", choices=("batch", "none"))
    # whole-face feature at the bottleneck (StudentGenerator): for two-way effects
    global_context: bool = option(False, "add a whole-face feature at the bottleneck (for two-way effects such as the "
                                  "gender swap)")
    # U-Net at 1/k resolution, residual resized onto the input (StudentGenerator)
    internal_scale: int = option(1, "run the U-Net at 1/k resolution and resize its residual onto the input (2 suits "
                                 "teachers that work at half the student's resolution: twice the channels for the "
                                 "same MACs)", ge=1, le=8)
    # The conditional PatchGAN judges (input, output) downscaled by this factor. With internal_scale k the student's
    # own change lives at 1/k resolution, so d_scale k judges all of it at 1/k^2 of the cost (at 256 px the
    # discriminator is ~3/4 of an iteration's time on a CPU) and its 70 px patches cover face parts, not pores.
    d_scale: int = option(1, "the discriminator judges (input, output) downscaled by this factor; with "
                          "--internal-scale k, k sees all of the student's change at 1/k^2 of the cost", ge=1, le=8)
    batch: int = option(8, "pairs per iteration", ge=1)
    iters: int = option(6000, "total iterations; the lr decays over the second half (with --resume: the run's own, "
                        "or a new total that stretches or shortens its schedule)", ge=1)
    decay_start: float = option(0.5, "fraction of the iterations before the lr starts to decay (as the teachers)",
                                ge=0, le=1, cli=False)
    lr: float = option(2e-4, "Adam learning rate", gt=0, le=1)
    # the discriminator's lr as a multiple of the generator's (two time-scale updates)
    lr_d_ratio: float = option(1.0, "the discriminator's learning rate as a multiple of --lr (two time-scale updates)",
                               gt=0, le=1000)
    beta1: float = option(0.5, "Adam beta1", ge=0, lt=1, cli=False)
    lambda_l1: float = option(100.0, "L1-to-teacher weight", ge=0)
    # discriminator feature matching (pix2pixHD): a perceptual loss with no pretrained net
    lambda_fm: float = option(10.0, "discriminator feature-matching weight", ge=0)
    lambda_gan: float = option(1.0, "conditional GAN weight", ge=0)
    # Feature distillation from the teacher (GAN Compression, Li et al. 2020): 1x1 adapters map the student's decoder
    # features onto the teacher's at the same resolution; loss = MSE relative to the teacher feature's power. 0: off.
    lambda_teacher_feat: float = option(0.0, "feature distillation from the pairs' teacher (1x1 adapters on the "
                                        "decoder; one-direction pairs, teacher resolution = student's internal "
                                        "resolution); 0: off", ge=0)
    # Exponential moving average of the generator's weights (and BatchNorm statistics), decay per iteration; 0: off.
    # The average is what is evaluated, sampled and saved as G: it smooths the step-to-step jitter of GAN training,
    # which shows as noisy texture (StyleGAN, pix2pixHD practice). The raw weights stay in the checkpoint.
    ema: float = option(0.0, "keep an exponential moving average of the generator (decay per iteration, e.g. 0.999) "
                        "and save that as G: smooths the jitter of GAN training; 0: off", ge=0, lt=1)
    ndf: int = option(32, "discriminator width (channels of its first layer; a different width starts D afresh on "
                      "--init)", ge=1, le=1024)
    bf16: bool = option(True, "train in fp32", negate=True)
    threads: int = option(0, "torch threads (0: default)", ge=0, le=1024)
    device: str = option("cpu", "cpu or cuda")
    checkpoint_minutes: float = option(5.0, "checkpoint interval", gt=0, cli=False)
    sample_every: int = option(500, "sample grid interval", ge=1)
    eval_every: int = option(1000, "held-out evaluation interval", ge=1)
    log_every: int = option(50, "loss log interval (iterations)", ge=1, cli=False)
    max_minutes: float = option(0.0, "stop with a checkpoint after this long (0: never)", ge=0)
    seed: int = option(0, "random seed", ge=0, lt=2**63)
    desc: str = option("", "run folder description", cli=False)
    # warm start: an earlier student run of the same network (e.g. before a teacher improved)
    init: str | None = option(None, "warm start from an earlier student run of the same network (new pairs, same "
                              "architecture: converges in a fraction of the iterations)")

    def generator_spec(self) -> dict:
        spec = {"type": "student_generator", "widths": list(self.widths), "n_blocks": self.n_blocks, "norm": self.norm,
                "up_kernel": 1}
        if self.global_context:  # only when on, so earlier students' specs (and --init checks) stay as they were
            spec["global_context"] = True
        if self.internal_scale != 1:
            spec["internal_scale"] = self.internal_scale
        return spec

    def discriminator_spec(self) -> dict:
        # Conditional PatchGAN: judges (input, output) pairs stacked on channels.
        return {"type": "patch_discriminator", "in_ch": 6, "ndf": self.ndf, "n_layers": 3, "norm": "instance"}


class _Pairs:
    def __init__(self, folder: Path, prefix: str = ""):
        self.inputs = np.load(folder / f"{prefix}inputs.npy", mmap_mode="r")
        self.targets = np.load(folder / f"{prefix}targets.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, idx: np.ndarray, flip: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(idx)
        a, b = np.asarray(self.inputs[idx]), np.asarray(self.targets[idx])
        if flip is not None:
            a = np.where(flip[:, None, None, None], a[:, :, ::-1], a)
            b = np.where(flip[:, None, None, None], b[:, :, ::-1], b)
        a, b = (torch.from_numpy(rgb_to_nchw(np.ascontiguousarray(v))) for v in (a, b))
        return a, b


def _d_view(x: torch.Tensor, d_scale: int) -> torch.Tensor:
    """What the discriminator sees: a (input, output) stack downscaled by d_scale (antialiased, like the teacher's
    and the student's own downscaling)."""
    if d_scale == 1:
        return x
    return F.interpolate(x.float(), scale_factor=1 / d_scale, mode="bilinear", antialias=True, align_corners=False)


def _features(netD: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Activations after each LeakyReLU of a PatchDiscriminator (for feature matching) and its output."""
    feats = []
    for layer in netD.net:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            feats.append(x)
    return feats + [x]


class TeacherFeatureLoss(nn.Module):
    """Feature distillation from the teacher that labelled the pairs (GAN Compression, Li et al. 2020).

    The teacher runs on the student's input as the pairs were made (x_low: the input resized to the teacher's
    resolution) and yields its features after the residual blocks and after each upsampling; the student's decoder
    features at the same resolutions (its `fuse` outputs, captured by hooks during its own forward pass) are mapped
    onto them by trainable 1x1 adapters. The adapters are training-only: they are not part of the student's
    weights or exports. The loss per level is the MSE relative to the teacher feature's mean power (unitless, so the
    levels weigh alike), averaged over levels.
    """

    def __init__(self, teacher_run: str | os.PathLike, direction: str, student: nn.Module, size: int,
                 device: torch.device):
        super().__init__()
        self.teacher, teacher_m = load_generator(teacher_run, direction, str(device))
        self.teacher.requires_grad_(False)
        self.res = int(teacher_m["resolution"])
        internal = size // getattr(student, "internal_scale", 1)
        widths = [fuse[0].out_channels for fuse in student.fuse]  # each fuse: conv, norm, ReLU
        # Which teacher body layers to read: the last residual block, and the ReLU after each upsampling.
        body = list(self.teacher.body)
        taps = [i for i, m in enumerate(body) if isinstance(m, nets.ResnetBlock)][-1:]
        taps += [i + 2 for i, m in enumerate(body) if isinstance(m, nets.UpConv)]
        self.taps = taps
        with torch.no_grad():
            t_shapes = [f.shape for f in self._teacher_feats(torch.zeros(1, 3, self.res, self.res, device=device))]
        self.levels = []  # student fuse index per tap
        adapters = []
        for shape in t_shapes:
            level = [i for i in range(len(widths)) if internal // 2 ** i == shape[-1]]
            if not level:
                raise FacefxError(f"teacher features at {shape[-1]} px have no student level at that resolution "
                                  f"(student U-Net at {internal} px); use --internal-scale {size // self.res} or "
                                  f"--lambda-teacher-feat 0")
            self.levels.append(level[0])
            adapters.append(nn.Conv2d(widths[level[0]], shape[1], 1))
        self.adapters = nn.ModuleList(adapters).to(device)
        self._student_feats: dict[int, torch.Tensor] = {}
        for i in set(self.levels):
            student.fuse[i].register_forward_hook(self._capture(i))

    def _capture(self, level: int):
        def hook(mod, _inp, out: torch.Tensor) -> None:
            if mod.training:  # the student's training forward passes only (not its evaluation or sample grids)
                self._student_feats[level] = out
        return hook

    def _teacher_feats(self, low: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [], low
        for i, layer in enumerate(self.teacher.body[: self.taps[-1] + 1]):
            h = layer(h)
            if i in self.taps:
                feats.append(h)
        return feats

    def forward(self, real_A: torch.Tensor) -> torch.Tensor:
        """The loss for the student's last forward pass (in training mode) on real_A."""
        with torch.no_grad():
            t_feats = self._teacher_feats(teacher_view(real_A, self.res))
        losses = []
        for level, adapter, t in zip(self.levels, self.adapters, t_feats):
            s = adapter(self._student_feats[level]).float()
            t = t.float()
            losses.append(F.mse_loss(s, t) / t.pow(2).mean().clamp_min(1e-6))
        self._student_feats.clear()
        return sum(losses) / len(losses)


def evaluate_student(net: nn.Module, pairs: _Pairs, limit: int = 64) -> dict:
    """Student vs teacher target on held-out pairs: PSNR (dB) and SSIM, on `limit` pairs spread over the whole test
    set (a swap student's test pairs are one domain, then the other)."""
    net.eval()
    device = next(net.parameters()).device
    ps, ss = [], []
    chosen = np.unique(np.linspace(0, len(pairs) - 1, min(len(pairs), limit)).round().astype(int))
    with torch.no_grad():
        for start in range(0, len(chosen), 8):
            x, y = pairs.batch(chosen[start:start + 8])
            out = net(x.to(device)).float().cpu().numpy()
            for o, t in zip(nchw_to_rgb(out), nchw_to_rgb(y.numpy())):
                ps.append(psnr(rgb_to_nchw(o), rgb_to_nchw(t)))
                ss.append(ssim(o, t))
    net.train()
    return {"psnr_vs_teacher_db": round(float(np.mean(ps)), 2), "ssim_vs_teacher": round(float(np.mean(ss)), 4),
            "eval_faces": len(ps)}


class StudentStage(Stage):
    """A Pix2Pix student for the training loop (facefx.train.loop): generator (and its moving average),
    conditional discriminator, optional teacher-feature adapters; its step, sample sheets, evaluation and files."""

    LOSS_SETTINGS = ("lambda_l1", "lambda_fm", "lambda_gan", "lr_d_ratio")

    def __init__(self, cfg: StudentConfig, ddp: Dist, device: torch.device, seed: int):
        self.cfg, self.ddp, self.device, self.seed = cfg, ddp, device, seed
        self.rng = np.random.default_rng(seed)
        pairs_dir = Path(cfg.pairs)
        self.pairs_m = read_manifest(pairs_dir, kind="pairs")
        self.name = f"student {self.pairs_m['effect']}"
        self.train_pairs, self.test = _Pairs(pairs_dir), _Pairs(pairs_dir, "test_")
        self.size = size = int(self.pairs_m["resolution"])
        _check_student_options(cfg, size)
        self.netG = nets.build(cfg.generator_spec()).to(device)
        self.netD = nets.build(cfg.discriminator_spec()).to(device)
        for m in self.netD.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
        self.ema_G = None
        if cfg.ema:  # a copy whose first update takes the (possibly warm-started or resumed) weights as they are
            # (made before the teacher-feature hooks go on netG, so the copy has none)
            self.ema_G = torch.optim.swa_utils.AveragedModel(
                self.netG, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        self.teacher_feat = None
        if cfg.lambda_teacher_feat:
            if self.pairs_m.get("direction") not in ("AB", "BA"):
                raise FacefxError(f"--lambda-teacher-feat needs pairs labelled by one teacher direction (AB or BA); "
                                  f"{pairs_dir} is {self.pairs_m.get('direction')!r}: use --lambda-teacher-feat 0")
            self.teacher_feat = TeacherFeatureLoss(self.pairs_m["parent"]["path"], self.pairs_m["direction"],
                                                   self.netG, size, device)
        adapters = list(self.teacher_feat.adapters.parameters()) if self.teacher_feat else []
        self.opt_G = torch.optim.Adam(list(self.netG.parameters()) + adapters, lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.opt_D = torch.optim.Adam(self.netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.optimizers = [(self.opt_G, 1.0), (self.opt_D, cfg.lr_d_ratio)]
        self.fixed = np.linspace(0, len(self.test) - 1, min(6, len(self.test))).astype(int)
        self.earlier: list[dict] = []  # the training stages before this run (its lineage ends with this run)
        self.G, self.D = self.netG, self.netD

    def start(self) -> None:
        """After any weights are loaded: the moving average's start, the cost, and DDP wrappers under torchrun."""
        if self.ema_G is not None and int(self.ema_G.n_averaged) == 0:
            # starts as the weights training starts from (a resumed average goes on)
            self.ema_G.update_parameters(self.netG)
        self.shipped = self.ema_G.module if self.ema_G is not None else self.netG  # evaluated, sampled, saved as G
        self.macs, self.params = nets.count_macs(self.netG, self.size), nets.count_params(self.netG)
        if self.ddp.main:
            print(f"student: {self.macs / 1e9:.3f} GMAC at {self.size}x{self.size}, "
                  f"{self.params / 1e6:.3f} M parameters")
        self.G, self.D = self.ddp.wrap(self.netG, self.device), self.ddp.wrap(self.netD, self.device)

    def train_step(self, step: int) -> dict[str, float]:
        cfg, rng = self.cfg, self.rng
        real_A, real_B = self.train_pairs.batch(rng.integers(0, len(self.train_pairs), cfg.batch),
                                                rng.random(cfg.batch) < 0.5)
        real_A, real_B = real_A.to(self.device), real_B.to(self.device)  # (B, 3, S, S) RGB [-1, 1]: input, target
        amp = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        # ---- generator: L1 to the teacher's target + feature matching + conditional GAN
        self.netD.requires_grad_(False)
        with torch.autocast(**amp):
            fake_B = self.G(real_A)
            # The discriminator's views of the (input, teacher) and (input, student) pairs, made once for the
            # generator's and the discriminator's steps.
            real_AB = _d_view(torch.cat([real_A, real_B], 1), cfg.d_scale)
            fake_AB = _d_view(torch.cat([real_A, fake_B], 1), cfg.d_scale)
            feats_fake = _features(self.netD, fake_AB)  # the bare module: D is frozen in this pass
            with torch.no_grad():
                feats_real = _features(self.netD, real_AB)
        losses = {"G_GAN": lsgan(feats_fake[-1], True) * cfg.lambda_gan,
                  "G_L1": F.l1_loss(fake_B.float(), real_B) * cfg.lambda_l1,
                  "G_FM": sum(F.l1_loss(f.float(), r.float()) for f, r in zip(feats_fake[:-1], feats_real[:-1]))
                  * cfg.lambda_fm / (len(feats_fake) - 1)}
        if self.teacher_feat is not None:
            with torch.autocast(**amp):
                losses["G_TF"] = self.teacher_feat(real_A) * cfg.lambda_teacher_feat
        self.opt_G.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        if self.teacher_feat is not None:
            self.ddp.average_grads(self.teacher_feat.adapters.parameters())  # outside the DDP-wrapped generator
        self.opt_G.step()
        if self.ema_G is not None:
            self.ema_G.update_parameters(self.netG)
        # ---- discriminator
        self.netD.requires_grad_(True)
        with torch.autocast(**amp):
            loss_D = 0.5 * (lsgan(self.D(real_AB), True) + lsgan(self.D(fake_AB.detach()), False))
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        named = {**{k: losses[k] for k in ("G_GAN", "G_L1", "G_FM")}, "D": loss_D}
        if "G_TF" in losses:
            named["G_TF"] = losses["G_TF"]
        return {k: float(v.detach()) for k, v in named.items()}

    def state(self) -> dict:
        state = {"G": self.netG.state_dict(), "D": self.netD.state_dict(), "opt_G": self.opt_G.state_dict(),
                 "opt_D": self.opt_D.state_dict()}
        if self.teacher_feat is not None:  # training-only 1x1 adapters, kept for --resume
            state["adapters"] = self.teacher_feat.adapters.state_dict()
        if self.ema_G is not None:  # "G" stays the raw weights that training resumes from
            state["G_ema"] = self.ema_G.module.state_dict()
        return state

    def load_state(self, state: dict) -> None:
        self.netG.load_state_dict(state["G"]), self.netD.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"]), self.opt_D.load_state_dict(state["opt_D"])
        if self.teacher_feat is not None:
            self.teacher_feat.adapters.load_state_dict(state["adapters"])
        step = int(state["step"])
        if self.ema_G is not None and "G_ema" in state:
            self.ema_G.module.load_state_dict(state["G_ema"])
            self.ema_G.n_averaged.fill_(max(step, 1))
        self.rng = np.random.default_rng(self.seed + step)

    def sample(self, run: Path, step: int) -> None:
        _student_sheet(self.shipped, self.test, self.fixed, run / "samples" / f"step_{step:06d}.png")

    def evaluate(self) -> dict:
        return evaluate_student(self.shipped, self.test)

    def save(self, run: Path, progress: dict, metrics: dict) -> None:
        """G.safetensors (the moving average where there is one), then the manifest."""
        _save_student(run, self.cfg, self.pairs_m, self.shipped, progress, metrics, self.macs, self.params,
                      self.earlier)


def _check_student_options(cfg: StudentConfig, size: int) -> None:
    if cfg.d_scale < 1 or size // cfg.d_scale < 32:
        raise FacefxError(f"--d-scale {cfg.d_scale}: the discriminator needs at least 32 px; use 1 to "
                          f"{max(1, size // 32)} for {size} px pairs")
    if cfg.lr_d_ratio <= 0:
        raise FacefxError(f"--lr-d-ratio {cfg.lr_d_ratio}: pass a positive multiple of --lr (1: the same rate)")
    if not 0.0 <= cfg.ema < 1.0:
        raise FacefxError(f"--ema {cfg.ema}: pass a decay in [0, 1), e.g. 0.999 (0: off)")


def train_student(cfg: StudentConfig, resume: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Distil a student from a pairs artifact (or resume a run); returns the run folder."""
    ddp, device, seed = setup(cfg.device, cfg.threads, cfg.seed)
    stage = StudentStage(cfg, ddp, device, seed)
    step, elapsed = 0, 0.0
    if resume:
        run = Path(resume)
        step, elapsed = restore(stage, run, device)
        # the stages before this run (a run from before lineages: its init's)
        run_m = read_manifest(run, kind="student")
        stage.earlier = run_m["lineage"][:-1] if "lineage" in run_m else earlier_stages(cfg.init, "student")
    else:
        stage.earlier = earlier_stages(cfg.init, "student")  # before a snapshot of this run can overwrite the init
        if cfg.init:
            _warm_start(stage.netG, stage.netD, cfg, device)
        run = next_run_dir(Path(cfg.root) / stage.pairs_m["effect"], cfg.desc or f"{stage.size}px-w{cfg.widths[0]}")
        run = Path(ddp.share(str(run)))  # every rank uses rank 0's folder name
        if ddp.main:
            (run / "samples").mkdir(parents=True)
        ddp.barrier()
    stage.start()
    train(stage, LoopSettings.from_config(cfg), run, ddp, step, elapsed, progress)
    return run


def _student_sheet(netG: nn.Module, test: _Pairs, idx: np.ndarray, path: Path) -> None:
    x, y = test.batch(idx)
    netG.eval()
    with torch.no_grad():
        out = netG(x.to(next(netG.parameters()).device)).float().cpu().numpy()
    netG.train()
    cols = [nchw_to_rgb(a)[..., ::-1] for a in (x.numpy(), y.numpy(), out)]
    save_png(path, grid([[c[i] for c in cols] for i in range(len(idx))], ["input", "teacher", "student"], cell=160))


def _warm_start(netG: nn.Module, netD: nn.Module, cfg: StudentConfig, device: torch.device) -> None:
    """Start from an earlier student's weights (G, and D from its checkpoint or snapshot where there); optimizers
    start fresh. The earlier student may be a run folder or a committed snapshot (students/<effect>)."""
    init = Path(cfg.init)
    init_m = read_manifest(init, kind="student")
    init_spec, spec = init_m.get("network", {}).get("G") or {}, cfg.generator_spec()
    init_widths, widths = list(init_spec.get("widths", [])), list(spec["widths"])
    if init_spec == spec:
        nets.load_weights(netG, init / "G.safetensors")
    elif ({**init_spec, "widths": widths} == spec and len(init_widths) == len(widths)
          and all(a <= b for a, b in zip(init_widths, widths))):
        # the same network, only wider: it starts out computing exactly what the earlier student did
        from safetensors.torch import load_file

        nets.widen_into(netG, load_file(str(init / "G.safetensors")))
        print(f"--init {init}: widened from widths {init_widths} to {widths} (same output at the start)")
    else:
        raise FacefxError(f"--init {init}: its network {init_spec} differs from this run's {spec}; pass the same "
                          f"--n-blocks/--norm/--global-context/--internal-scale and --widths at least as wide at "
                          f"every level, or drop --init")
    if (init / "checkpoint.pt").is_file():
        netD.load_state_dict(torch.load(init / "checkpoint.pt", map_location=device, weights_only=True)["D"])
    elif (init / "D.safetensors").is_file() and init_m.get("network", {}).get("D") == cfg.discriminator_spec():
        nets.load_weights(netD, init / "D.safetensors")


def snapshot_student(run: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Compact, committable copy of a student run: fp16 G and D weights and the manifest (step, metrics, the pairs
    it came from); no optimizer state. A new machine warm-starts from it (student.py --init) or exports it."""
    run, dest = Path(run), Path(dest)
    manifest = read_manifest(run, kind="student")
    cfg = student_config_from_run(run)
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    manifest["network"] = {"G": cfg.generator_spec(), "D": cfg.discriminator_spec()}
    state["G"] = state.get("G_ema", state["G"])  # the shipped weights: the moving average where there is one
    return nets.save_snapshot(dest, manifest, {n: (manifest["network"][n], state[n]) for n in ("G", "D")}, source=run)


def _save_student(run: Path, cfg: StudentConfig, pairs_m: dict, shipped: nn.Module, progress: dict, metrics: dict,
                  macs: int, params: int, earlier: list[dict]) -> None:
    """shipped: the generator saved as G.safetensors (a moving average of the trained weights, or those);
    earlier: the training stages of the student this run warm-started from (its lineage ends with this run)."""
    nets.save_weights(shipped, run / "G.safetensors")
    size = int(pairs_m["resolution"])
    manifest = new_manifest(
        "student", effect=pairs_m["effect"], parent=cfg.pairs, network={"G": cfg.generator_spec()},
        resolution=size, crop=pairs_m["crop"], pixels=PIXEL_CONTRACT, direction=pairs_m.get("direction"),
        strength=pairs_m.get("strength", 1.0), face_mask=pairs_m.get("config", {}).get("face_mask", False),
        config={**dataclasses.asdict(cfg), "widths": list(cfg.widths)}, progress=progress,
        cost={"macs": macs, "gmac": round(macs / 1e9, 4), "params": params})
    manifest["metrics"] = dict(metrics)
    manifest["files"] = hash_files(run, ["G.safetensors"])
    manifest["lineage"] = list(earlier) + [{**run_stage(manifest), "pairs": cfg.pairs}]
    write_manifest(run, manifest)


def student_config_from_run(run: str | os.PathLike) -> StudentConfig:
    cfg = dict(read_manifest(run, kind="student")["config"])
    cfg["widths"] = tuple(cfg["widths"])
    cfg.setdefault("d_scale", 1)  # runs from before the option judged at full resolution
    cfg.setdefault("lambda_teacher_feat", 0.0)  # and had no teacher feature distillation
    cfg.setdefault("ema", 0.0)  # nor a moving average of the generator
    return StudentConfig(**cfg)
