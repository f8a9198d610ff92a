"""Distillation: a teacher labels real faces (pairs), and a compact Pix2Pix student learns from the pairs.

pairs:   teacher artifact -> artifacts/pairs/<effect>/<NNNNN-desc>/ (kind "pairs")
         inputs.npy, targets.npy (N, S, S, 3) uint8 RGB training pairs (with webcam-like augmentations),
         test_inputs.npy, test_targets.npy from held-out faces, manifest (teacher, counts, sharpness, drops)
student: pairs artifact -> artifacts/students/<effect>/<NNNNN-desc>/ (kind "student")
         G.safetensors (+ checkpoint.pt for resume), samples/, losses.csv, manifest (spec, crop, metrics)
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from facefx import nets
from facefx.crop import CropSpec, inner_face_mask
from facefx.cyclegan import load_generator
from facefx.data import read_crops
from facefx.errors import FacefxError, interrupt_on_signals
from facefx.losses import lsgan
from facefx.manifest import (append_csv_row, atomic_write_bytes, earlier_stages, hash_files, new_manifest, next_run_dir,
                             read_manifest, run_stage, staged_dir, write_manifest)
from facefx.metrics import psnr, sharpness, ssim
from facefx.pixels import PIXEL_CONTRACT, nchw_to_rgb, rgb_to_nchw
from facefx.prepare import load_faces
from facefx.sheets import grid, save_png


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
        self.face_mask = face_mask  # confine the change to the inner face (facefx.crop.inner_face_mask)
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
    teacher: str
    direction: str = "AB"  # AB, BA, or swap (A -> B and B -> A in one student)
    faces: list[str] | None = None  # default: the teacher's source-domain face sets
    root: str = "artifacts/pairs"
    size: int = 256
    augment: int = 2  # augmented variants per face, besides the face itself
    strength: float = 1.0  # scale of the teacher's change in the targets (TeacherLabeler)
    face_mask: bool = False  # keep the teacher's change to the inner face: hair and background stay the input's
    batch: int = 16
    judge_filter: bool = True
    seed: int = 0
    max_faces: int = 0  # 0 = all
    device: str = "cpu"  # where the teacher runs (cpu or cuda); augmentation and decoding stay on the CPU


# A judge-based check that the teacher really did its job on a pair (the judge: facefx.judges.EFFECT_JUDGE):
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
        from facefx.judges import EFFECT_JUDGE, load_judge

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
    """Label faces with the teacher; returns the pairs artifact folder."""
    teacher_m = read_manifest(cfg.teacher, kind="teacher")
    effect = teacher_m["effect"]
    jobs = [(d, sets, TeacherLabeler(cfg.teacher, d, cfg.device, strength=cfg.strength, face_mask=cfg.face_mask),
             _judge_check(effect, d, teacher_m["crop"]) if cfg.judge_filter else None)
            for d, sets in pair_jobs(cfg.direction, teacher_m, cfg.faces)]
    rng = np.random.default_rng(cfg.seed)
    out = next_run_dir(Path(cfg.root) / effect, f"{cfg.direction}-{cfg.size}px")
    counts: dict[str, int] = {}
    drops: dict[str, int] = {}
    sharp: list[float] = []
    with staged_dir(out) as tmp:
        for split in ("train", "test"):
            job_paths = []
            for _, sets, _, _ in jobs:
                paths = [p for f in sets for p in load_faces(f, split)[1]]
                if cfg.max_faces:
                    paths = paths[: cfg.max_faces if split == "train" else max(2, cfg.max_faces // 4)]
                job_paths.append(paths)
            variants = 1 + (cfg.augment if split == "train" else 0)
            n = sum(len(p) for p in job_paths) * variants
            prefix = "" if split == "train" else "test_"
            inputs = np.lib.format.open_memmap(tmp / f"{prefix}inputs.npy", "w+", np.uint8, (n, cfg.size, cfg.size, 3))
            targets = np.lib.format.open_memmap(tmp / f"{prefix}targets.npy", "w+", np.uint8, (n, cfg.size, cfg.size, 3))
            keep = np.ones(n, bool)
            k = 0
            for (d, _, labeler, judge), paths in zip(jobs, job_paths):
                for start in tqdm(range(0, len(paths), cfg.batch), desc=f"pairs {effect} {d} {split}", unit="batch",
                                  disable=not progress):
                    faces = read_crops(paths[start:start + cfg.batch], cfg.size)[..., ::-1]  # BGR -> RGB
                    batch = [f for face in faces for f in
                             [face] + [augment_webcam(face, rng) for _ in range(variants - 1)]]
                    batch = np.ascontiguousarray(np.stack(batch))
                    labels = labeler(batch)
                    inputs[k:k + len(batch)], targets[k:k + len(batch)] = batch, labels
                    if judge is not None and split == "train":
                        model, passes, why = judge
                        ok = passes(model.predict(torch.from_numpy(rgb_to_nchw(batch))),
                                    model.predict(torch.from_numpy(rgb_to_nchw(labels))))
                        keep[k:k + len(batch)] = ok
                        drops[why] = drops.get(why, 0) + int((~ok).sum())
                    sharp += [sharpness(t) / max(sharpness(i), 1e-6) for i, t in zip(batch[::4], labels[::4])]
                    k += len(batch)
            inputs.flush(), targets.flush()
            del inputs, targets
            if not keep.all():  # rewrite without the dropped pairs
                for name in (f"{prefix}inputs.npy", f"{prefix}targets.npy"):
                    arr = np.load(tmp / name)[keep]
                    np.save(tmp / name, arr)
            counts[split] = int(keep.sum())
        if counts["train"] == 0:
            raise FacefxError("the judge rejected every pair: the teacher has not learned the effect yet; "
                              "train it longer or pass --no-judge-filter")
        labeler = jobs[0][2]
        manifest = new_manifest(
            "pairs", effect=effect, parent=cfg.teacher, direction=cfg.direction,
            face_sets=[f for _, sets, _, _ in jobs for f in sets],
            face_sets_by_direction={d: sets for d, sets, _, _ in jobs},
            resolution=cfg.size, teacher_resolution=labeler.res,
            target_rule=labeler.target_rule(cfg.size), strength=cfg.strength,
            crop=CropSpec.from_dict(teacher_m["crop"]).with_size(cfg.size).to_dict(), pixels=PIXEL_CONTRACT,
            config=dataclasses.asdict(cfg),
            counts={**counts, "dropped": drops,
                    "judge": "on" if any(j[3] for j in jobs) else "unavailable or off"})
        manifest["metrics"] = {"target_sharpness_ratio_median": round(float(np.median(sharp)), 3),
                               "target_sharpness_ratio_p10": round(float(np.percentile(sharp, 10)), 3)}
        manifest["files"] = hash_files(tmp, ["inputs.npy", "targets.npy", "test_inputs.npy", "test_targets.npy"])
        write_manifest(tmp, manifest)
    return out


# ---- student ----------------------------------------------------------------------------------------------------
@dataclass
class StudentConfig:
    pairs: str
    root: str = "artifacts/students"
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    n_blocks: int = 2
    norm: str = "batch"
    global_context: bool = False  # whole-face feature at the bottleneck (StudentGenerator): for two-way effects
    internal_scale: int = 1  # U-Net at 1/k resolution, residual resized onto the input (StudentGenerator)
    # The conditional PatchGAN judges (input, output) downscaled by this factor. With internal_scale k the student's
    # own change lives at 1/k resolution, so d_scale k judges all of it at 1/k^2 of the cost (at 256 px the
    # discriminator is ~3/4 of an iteration's time on a CPU) and its 70 px patches cover face parts, not pores.
    d_scale: int = 1
    batch: int = 8
    iters: int = 6000
    lr: float = 2e-4
    lr_d_ratio: float = 1.0  # the discriminator's lr as a multiple of the generator's (two time-scale updates)
    beta1: float = 0.5
    lambda_l1: float = 100.0
    lambda_fm: float = 10.0  # discriminator feature matching (pix2pixHD): a perceptual loss with no pretrained net
    lambda_gan: float = 1.0
    # Feature distillation from the teacher (GAN Compression, Li et al. 2020): 1x1 adapters map the student's decoder
    # features onto the teacher's at the same resolution; loss = MSE relative to the teacher feature's power. 0: off.
    lambda_teacher_feat: float = 0.0
    # Exponential moving average of the generator's weights (and BatchNorm statistics), decay per iteration; 0: off.
    # The average is what is evaluated, sampled and saved as G: it smooths the step-to-step jitter of GAN training,
    # which shows as noisy texture (StyleGAN, pix2pixHD practice). The raw weights stay in the checkpoint.
    ema: float = 0.0
    ndf: int = 32
    bf16: bool = True
    threads: int = 0
    device: str = "cpu"
    checkpoint_minutes: float = 5.0
    sample_every: int = 500
    eval_every: int = 1000
    log_every: int = 50
    max_minutes: float = 0.0
    seed: int = 0
    desc: str = ""
    init: str | None = None  # warm start: an earlier student run of the same network (e.g. before a teacher improved)

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
        return torch.from_numpy(rgb_to_nchw(np.ascontiguousarray(a))), torch.from_numpy(rgb_to_nchw(np.ascontiguousarray(b)))


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


def train_student(cfg: StudentConfig, resume: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Distil a student from a pairs artifact (or resume a run); returns the run folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    pairs_dir = Path(cfg.pairs)
    pairs_m = read_manifest(pairs_dir, kind="pairs")
    train, test = _Pairs(pairs_dir), _Pairs(pairs_dir, "test_")
    size = int(pairs_m["resolution"])
    if cfg.d_scale < 1 or size // cfg.d_scale < 32:
        raise FacefxError(f"--d-scale {cfg.d_scale}: the discriminator needs at least 32 px; use 1 to "
                          f"{max(1, size // 32)} for {size} px pairs")
    # ---- build networks
    if cfg.lr_d_ratio <= 0:
        raise FacefxError(f"--lr-d-ratio {cfg.lr_d_ratio}: pass a positive multiple of --lr (1: the same rate)")
    if not 0.0 <= cfg.ema < 1.0:
        raise FacefxError(f"--ema {cfg.ema}: pass a decay in [0, 1), e.g. 0.999 (0: off)")
    netG = nets.build(cfg.generator_spec()).to(device)
    netD = nets.build(cfg.discriminator_spec()).to(device)
    for m in netD.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
    ema_G = None
    if cfg.ema:  # a copy whose first update takes the (possibly warm-started or resumed) weights as they are
        # (made before the teacher-feature hooks go on netG, so the copy has none)
        ema_G = torch.optim.swa_utils.AveragedModel(
            netG, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    teacher_feat = None
    if cfg.lambda_teacher_feat:
        if pairs_m.get("direction") not in ("AB", "BA"):
            raise FacefxError(f"--lambda-teacher-feat needs pairs labelled by one teacher direction (AB or BA); "
                              f"{pairs_dir} is {pairs_m.get('direction')!r}: use --lambda-teacher-feat 0")
        teacher_feat = TeacherFeatureLoss(pairs_m["parent"]["path"], pairs_m["direction"], netG, size, device)
    g_params = list(netG.parameters()) + (list(teacher_feat.adapters.parameters()) if teacher_feat else [])
    opt_G = torch.optim.Adam(g_params, lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_D = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    step, elapsed_before = 0, 0.0
    if resume:
        run = Path(resume)
        state = torch.load(run / "checkpoint.pt", map_location=device, weights_only=True)
        netG.load_state_dict(state["G"]), netD.load_state_dict(state["D"])
        opt_G.load_state_dict(state["opt_G"]), opt_D.load_state_dict(state["opt_D"])
        if teacher_feat is not None:
            teacher_feat.adapters.load_state_dict(state["adapters"])
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        if ema_G is not None and "G_ema" in state:
            ema_G.module.load_state_dict(state["G_ema"])
            ema_G.n_averaged.fill_(max(step, 1))
        rng = np.random.default_rng(cfg.seed + step)
        run_m = read_manifest(run, kind="student")  # the stages before this run (a run from before lineages: its init's)
        earlier = run_m["lineage"][:-1] if "lineage" in run_m else earlier_stages(cfg.init, "student")
    else:
        earlier = earlier_stages(cfg.init, "student")  # before a snapshot of this run can overwrite the init
        if cfg.init:
            _warm_start(netG, netD, cfg, device)
        run = next_run_dir(Path(cfg.root) / pairs_m["effect"], cfg.desc or f"{size}px-w{cfg.widths[0]}")
        (run / "samples").mkdir(parents=True)
    if ema_G is not None and int(ema_G.n_averaged) == 0:
        ema_G.update_parameters(netG)  # starts as the weights training starts from (a resumed average goes on)
    shipped = ema_G.module if ema_G is not None else netG  # what is evaluated, sampled and saved as G
    macs, params = nets.count_macs(netG, size), nets.count_params(netG)
    print(f"student: {macs / 1e9:.3f} GMAC at {size}x{size}, {params / 1e6:.3f} M parameters")
    fixed = np.linspace(0, len(test) - 1, min(6, len(test))).astype(int)

    def lr_at(s: int) -> float:  # constant for half, then linear decay (as the teachers)
        half = cfg.iters // 2
        return cfg.lr * (1.0 if s < half else max(0.0, 1 - (s - half) / max(1, cfg.iters - half)))

    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    t0 = time.time()
    last_ckpt = t0
    metrics: dict = {}
    acc: dict[str, float] = {}
    bar = tqdm(total=cfg.iters, initial=step, desc=f"student {pairs_m['effect']}", unit="it", disable=not progress)
    restore_signals = interrupt_on_signals()  # `kill` saves and stops, like Ctrl+C
    try:
        while step < cfg.iters:
            for g in opt_G.param_groups:
                g["lr"] = lr_at(step)
            for g in opt_D.param_groups:
                g["lr"] = lr_at(step) * cfg.lr_d_ratio
            real_A, real_B = train.batch(rng.integers(0, len(train), cfg.batch), rng.random(cfg.batch) < 0.5)
            real_A, real_B = real_A.to(device), real_B.to(device)  # (B, 3, S, S) RGB [-1, 1]: input, teacher target
            # ---- generator: L1 to the teacher's target + feature matching + conditional GAN
            netD.requires_grad_(False)
            with torch.autocast(**amp):
                fake_B = netG(real_A)
                # The discriminator's views of the (input, teacher) and (input, student) pairs, made once for the
                # generator's and the discriminator's steps.
                real_AB = _d_view(torch.cat([real_A, real_B], 1), cfg.d_scale)
                fake_AB = _d_view(torch.cat([real_A, fake_B], 1), cfg.d_scale)
                feats_fake = _features(netD, fake_AB)
                with torch.no_grad():
                    feats_real = _features(netD, real_AB)
            loss_G_GAN = lsgan(feats_fake[-1], True) * cfg.lambda_gan
            loss_G_L1 = F.l1_loss(fake_B.float(), real_B) * cfg.lambda_l1
            loss_G_FM = sum(F.l1_loss(f.float(), r.float()) for f, r in zip(feats_fake[:-1], feats_real[:-1])) \
                * cfg.lambda_fm / (len(feats_fake) - 1)
            loss_G = loss_G_GAN + loss_G_L1 + loss_G_FM
            if teacher_feat is not None:
                with torch.autocast(**amp):
                    loss_G_TF = teacher_feat(real_A) * cfg.lambda_teacher_feat
                loss_G = loss_G + loss_G_TF
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()
            if ema_G is not None:
                ema_G.update_parameters(netG)
            # ---- discriminator
            netD.requires_grad_(True)
            with torch.autocast(**amp):
                loss_D = 0.5 * (lsgan(netD(real_AB), True) + lsgan(netD(fake_AB.detach()), False))
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
            named = {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, "G_FM": loss_G_FM, "D": loss_D}
            if teacher_feat is not None:
                named["G_TF"] = loss_G_TF
            losses = {k: float(v.detach()) for k, v in named.items()}
            if not all(math.isfinite(v) for v in losses.values()):
                raise FacefxError(f"student loss became non-finite at step {step}; resume with a lower --lr")
            step += 1
            bar.update(1)
            for k, v in losses.items():
                acc[k] = acc.get(k, 0.0) + v
            if step % cfg.log_every == 0:
                mean = {k: v / cfg.log_every for k, v in acc.items()}
                acc = {}
                bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items()})
                append_csv_row(run / "losses.csv",
                               {"step": step, "elapsed_s": round(elapsed_before + time.time() - t0, 1), **mean})
            if step % cfg.sample_every == 0 or step == cfg.iters:
                _student_sheet(shipped, test, fixed, run / "samples" / f"step_{step:06d}.png")
            if step % cfg.eval_every == 0 or step == cfg.iters:
                metrics = evaluate_student(shipped, test)
                bar.write(f"step {step}: {metrics}")
            now = time.time()
            out_of_time = cfg.max_minutes and (now - t0) / 60 >= cfg.max_minutes
            if now - last_ckpt > cfg.checkpoint_minutes * 60 or out_of_time:
                _student_checkpoint(run, cfg, pairs_m, netG, netD, opt_G, opt_D, step, elapsed_before + now - t0,
                                    metrics, macs, params, teacher_feat, shipped, earlier)
                last_ckpt = now
            if out_of_time:
                break
    except KeyboardInterrupt:
        bar.write("interrupted: saving a checkpoint")
    finally:
        restore_signals()
        bar.close()
    if not metrics or step % cfg.eval_every:
        metrics = evaluate_student(shipped, test)
    _student_checkpoint(run, cfg, pairs_m, netG, netD, opt_G, opt_D, step, elapsed_before + time.time() - t0,
                        metrics, macs, params, teacher_feat, shipped, earlier)
    print(f"step {step}/{cfg.iters}: {metrics}; run folder {run}")
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


def _student_checkpoint(run: Path, cfg: StudentConfig, pairs_m: dict, netG, netD, opt_G, opt_D, step: int,
                        elapsed: float, metrics: dict, macs: int, params: int,
                        teacher_feat: TeacherFeatureLoss | None = None, shipped: nn.Module | None = None,
                        earlier: list[dict] | None = None) -> None:
    """shipped: the generator saved as G.safetensors (a moving average of netG's weights, or netG itself);
    earlier: the training stages of the student this run warm-started from (its lineage ends with this run)."""
    shipped = netG if shipped is None else shipped
    buf = io.BytesIO()
    state = {"G": netG.state_dict(), "D": netD.state_dict(), "opt_G": opt_G.state_dict(),
             "opt_D": opt_D.state_dict(), "step": step, "elapsed_s": elapsed}
    if teacher_feat is not None:  # training-only 1x1 adapters, kept for --resume
        state["adapters"] = teacher_feat.adapters.state_dict()
    if shipped is not netG:  # "G" stays the raw weights that training resumes from
        state["G_ema"] = shipped.state_dict()
    torch.save(state, buf)
    atomic_write_bytes(run / "checkpoint.pt", buf.getvalue())
    nets.save_weights(shipped, run / "G.safetensors")
    size = int(pairs_m["resolution"])
    manifest = new_manifest(
        "student", effect=pairs_m["effect"], parent=cfg.pairs, network={"G": cfg.generator_spec()},
        resolution=size, crop=pairs_m["crop"], pixels=PIXEL_CONTRACT, direction=pairs_m.get("direction"),
        strength=pairs_m.get("strength", 1.0), face_mask=pairs_m.get("config", {}).get("face_mask", False),
        config={**dataclasses.asdict(cfg), "widths": list(cfg.widths)},
        progress={"step": step, "iters": cfg.iters, "elapsed_s": round(elapsed, 1),
                  "s_per_iter": round(elapsed / max(step, 1), 3)},
        cost={"macs": macs, "gmac": round(macs / 1e9, 4), "params": params})
    manifest["metrics"] = dict(metrics)
    manifest["files"] = hash_files(run, ["G.safetensors"])
    manifest["lineage"] = list(earlier or []) + [{**run_stage(manifest), "pairs": cfg.pairs}]
    write_manifest(run, manifest)


def student_config_from_run(run: str | os.PathLike) -> StudentConfig:
    cfg = dict(read_manifest(run, kind="student")["config"])
    cfg["widths"] = tuple(cfg["widths"])
    cfg.setdefault("d_scale", 1)  # runs from before the option judged at full resolution
    cfg.setdefault("lambda_teacher_feat", 0.0)  # and had no teacher feature distillation
    cfg.setdefault("ema", 0.0)  # nor a moving average of the generator
    return StudentConfig(**cfg)
