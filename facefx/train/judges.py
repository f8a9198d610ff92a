"""Judges: small CNNs that measure what an effect did (age in years, P(female), P(anime)).

Input artifacts: face sets (artifacts/faces/<name>/, kind "faces") in THE crop geometry; only their
'train' split is trained on, their 'test' split is what each judge reports its own accuracy on.
Output artifact (kind "judge"), judges/<name>/ (committed, < 2 MB):
  manifest.json      network spec ({"judge": {"type": "judge_cnn", ...}}), target, resolution, crop, pixel
                     contract, training config, held-out metrics
  judge.safetensors  weights

    from facefx.train.judges import load_judge
    age = load_judge("age").predict(x)      # x: (N, 3, S, S) float32 RGB [-1, 1], any S -> (N,) years

Trained from scratch (no pretrained weights exist offline), at 64-96 px, on CPU in minutes: good enough to
tell a 25-year-old from a 70-year-old or a photo from a drawing, not a face-analysis product. Torch only;
the realtime path never imports this module.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefx.errors import FacefxError
from facefx.manifest import (
    hash_files,
    new_manifest,
    next_run_dir,
    read_manifest,
    staged_dir,
    verify_files,
    write_manifest,
)
from facefx.options import option
from facefx.runtime.crop import CropSpec, recrop_theta
from facefx.runtime.pixels import PIXEL_CONTRACT
from facefx.train import nets
from facefx.train.loop import Dist, LoopSettings, Stage, restore, setup, train

JUDGES_DIR = Path(__file__).resolve().parents[2] / "judges"
WEIGHTS = "judge.safetensors"
# What each judge predicts: its output's meaning, and how a raw network output becomes it.
TARGETS = {
    "age": {"unit": "years", "kind": "regression"},
    "gender": {"unit": "P(female)", "kind": "binary"},
    "anime": {"unit": "P(anime)", "kind": "binary"},
}


# ---- network ----------------------------------------------------------------------------------------
class JudgeNet(nn.Module):
    """VGG-like CNN: (B, 3, S, S) RGB [-1, 1] -> (B,) one raw output (logit, or age via out_scale/out_bias).

    A 3x3 stem, then per width a stride-2 conv and a conv (BatchNorm, ReLU), global average pooling,
    dropout, linear. ~45 MMAC and ~0.3 M parameters at 64 px with the default widths.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2,
                 out_scale: float = 1.0, out_bias: float = 0.0):
        super().__init__()

        def cbr(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        widths = list(widths)
        layers = cbr(3, widths[0])
        for a, b in zip(widths[:-1], widths[1:]):
            layers += cbr(a, b, stride=2) + cbr(b, b)
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], 1)
        # Regression judges start at the mean target (out_bias) with a sensible spread (out_scale).
        self.out_scale, self.out_bias = float(out_scale), float(out_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean((2, 3))
        return self.fc(self.drop(h)).squeeze(1) * self.out_scale + self.out_bias


# Judge networks rebuild through facefx.train.nets (build / load_from_artifact), like every other network.
nets.NETWORKS.setdefault("judge_cnn", JudgeNet)


# ---- loading and predicting ---------------------------------------------------------------------------
class Judge:
    """A loaded judge: `.predict(x)` on (N, 3, S, S) float32 RGB [-1, 1] at any S -> np.ndarray (N,)."""

    def __init__(self, net: nn.Module, manifest: dict, folder: Path):
        self.net = net.eval()
        self.manifest = manifest
        self.folder = folder
        self.name = str(manifest["target"])
        self.size = int(manifest["resolution"])
        self.unit = TARGETS[self.name]["unit"]
        # The geometry it was trained on (None for a judge being evaluated mid-training: it takes its own crops).
        self.crop = CropSpec.from_dict(manifest["crop"]) if "crop" in manifest else None
        self._theta: torch.Tensor | None = None  # input crop geometry -> the judge's (see for_crop)

    def for_crop(self, crop: CropSpec | dict) -> Judge:
        """This judge, taking crops made with `crop` (e.g. a zoomed face set's): each is resampled into the
        geometry the judge was trained on before it is judged, so one judge serves face sets of any zoom."""
        crop = CropSpec.from_dict(crop) if isinstance(crop, dict) else crop
        if self.crop is None:
            raise FacefxError(f"judge {self.name!r} has no crop geometry in its manifest; retrain it with "
                              "benchmarks/judges.py")
        judge = Judge(self.net, self.manifest, self.folder)
        theta = recrop_theta(crop, self.crop)
        judge._theta = None if theta is None else torch.from_numpy(theta).float()
        return judge

    @torch.no_grad()
    def predict(self, x: torch.Tensor | np.ndarray, batch: int = 256, tta: bool = True) -> np.ndarray:
        """Age in years (age judge), P(female) (gender), or P(anime) (anime), one value per image.

        tta: also judge the mirrored face and average (judges are trained on flips, so this only reduces noise).
        """
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if x.ndim != 4 or x.shape[1] != 3 or x.dtype != torch.float32:
            raise FacefxError(f"judge {self.name!r} takes float32 (N, 3, S, S) RGB [-1, 1]; got "
                              f"{x.dtype} {tuple(x.shape)}")
        outs = []
        for i in range(0, len(x), batch):
            xb = resize(recrop(x[i:i + batch].cpu(), self._theta), self.size)
            y = self.net(xb)
            if tta:
                y = 0.5 * (y + self.net(xb.flip(-1)))
            outs.append(y)
        y = torch.cat(outs) if outs else torch.zeros(0)
        if TARGETS[self.name]["kind"] == "binary":
            y = torch.sigmoid(y)
        return y.float().numpy()


def recrop(x: torch.Tensor, theta: torch.Tensor | None) -> torch.Tensor:
    """(N, 3, S, S) crops resampled into another crop geometry (theta: facefx.runtime.crop.recrop_theta), border
    replicated."""
    if theta is None:
        return x
    grid = F.affine_grid(theta.to(x.dtype).expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, S, S) -> (N, 3, size, size), antialiased: how a judge sees a crop of any size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def judge_dir(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """judges/<name> of this checkout (or of root); an existing folder path is taken as is."""
    p = Path(name)
    if p.is_dir() and (p / "manifest.json").is_file():
        return p
    return Path(root or JUDGES_DIR) / str(name)


def load_judge(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Judge:
    """Load judge `name` ("age", "gender", "anime", or a judge folder); refuse it if its files were changed."""
    folder = judge_dir(name, root)
    if not (folder / "manifest.json").is_file():
        known = sorted(p.name for p in Path(root or JUDGES_DIR).glob("*") if (p / "manifest.json").is_file())
        raise FacefxError(f"no judge {str(name)!r} at {folder}; known judges: {', '.join(known) or 'none'} "
                          "(train them with benchmarks/judges.py)")
    manifest = read_manifest(folder, kind="judge")
    verify_files(folder, manifest)
    net, manifest = nets.load_from_artifact(folder, "judge", kind="judge")
    return Judge(net, manifest, folder)


# ---- training data --------------------------------------------------------------------------------------
@dataclass
class LabelledFaces:
    """uint8 RGB (N, 3, S, S) faces with float targets, and per-item group names for reporting."""

    images: torch.Tensor
    targets: torch.Tensor
    groups: list[str]
    class_of: torch.Tensor  # int class per item for balanced sampling (0 for regression)
    items: list[dict]  # the faces manifests' items (labels such as age, gender)


def load_labelled(sources: Sequence[tuple[str, Callable[[dict], float | None], str]], split: str, size: int,
                  max_per_source: int | None = None) -> LabelledFaces:
    """Faces of `split` from (faces folder, item -> target or None to skip, group name) sources."""
    from facefx.train.data import read_crops

    paths, targets, groups, all_items = [], [], [], []
    for folder, target_of, group in sources:
        manifest = read_manifest(folder, kind="faces")
        items = [i for i in manifest["items"] if i["split"] == split]
        kept = [(i, target_of(i)) for i in items]
        kept = [(i, t) for i, t in kept if t is not None]
        if max_per_source and len(kept) > max_per_source:
            # An even, deterministic subsample (the manifests are sorted by file name).
            kept = [kept[j] for j in np.linspace(0, len(kept) - 1, max_per_source).round().astype(int)]
        paths += [Path(folder) / i["file"] for i, _ in kept]
        targets += [float(t) for _, t in kept]
        groups += [group] * len(kept)
        all_items += [i for i, _ in kept]
    if not paths:
        raise FacefxError(f"no labelled faces in the {split!r} split of {[s[0] for s in sources]}")
    rgb = read_crops(paths, size)[..., ::-1]  # BGR -> RGB, (N, S, S, 3)
    images = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))
    t = torch.tensor(targets, dtype=torch.float32)
    return LabelledFaces(images, t, groups, t.round().long().clamp(0, 1), all_items)


def jitter(x: torch.Tensor, g: torch.Generator, shift: float = 0.06, scale: float = 0.06,
           rotate_deg: float = 6.0, color: float = 0.1) -> torch.Tensor:
    """Random flip, small similarity jitter (the crop geometry varies this much between detections) and
    brightness/contrast: (B, 3, S, S) [-1, 1] -> same."""
    b = len(x)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    s = 1.0 + (torch.rand(b, generator=g) * 2 - 1) * scale
    a = (torch.rand(b, generator=g) * 2 - 1) * math.radians(rotate_deg)
    t = (torch.rand(b, 2, generator=g) * 2 - 1) * shift * 2  # grid units: [-1, 1] spans the crop
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = s * torch.cos(a) * flip
    theta[:, 0, 1] = -s * torch.sin(a)
    theta[:, 1, 0] = s * torch.sin(a) * flip
    theta[:, 1, 1] = s * torch.cos(a)
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = 1.0 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * color
    bias = (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * color
    return (y * gain + bias).clamp(-1, 1)


# ---- training ---------------------------------------------------------------------------------------------
@dataclass
class JudgeConfig:
    target: str = option(help="which judge: age, gender or anime", choices=("age", "gender", "anime"), cli=False)
    out: str = option(str(JUDGES_DIR), "where judge folders are written")
    faces_root: str = option("artifacts/faces", "prepared face sets")
    size: int = option(64, "judge input size in px", ge=16, le=512)
    widths: list[int] = option(help="channel widths of the CNN's stages", split=",", ge=1, le=4096,
                               default_factory=lambda: [16, 32, 64, 128])
    steps: int = option(3000, "training steps", ge=1)
    batch: int = option(64, "batch size", ge=1)
    lr: float = option(3e-3, "AdamW peak learning rate", gt=0, le=10, cli=False)
    # The lr rises linearly over the first `warmup` of the steps, then decays linearly to 0 from decay_start
    # (facefx.train.loop.Schedule; the shipped judges were trained with a one-cycle cosine schedule of the same 15%
    # warm-up).
    warmup: float = option(0.15, "fraction of the steps over which the lr rises linearly", ge=0, le=1, cli=False)
    decay_start: float = option(0.15, "fraction of the steps after which the lr decays linearly to 0", ge=0, le=1,
                                cli=False)
    weight_decay: float = option(5e-4, "weight decay", ge=0, lt=1, cli=False)
    bf16: bool = option(True, "train in fp32 (bf16 autocast is ~2.5x faster on CPU)", negate=True)
    threads: int = option(1, "torch CPU threads", ge=1, le=1024)
    # stop early (with whatever the schedule reached) after this long
    max_minutes: float = option(10.0, "stop a judge's training after this long", gt=0)
    seed: int = option(0, "random seed", ge=0, lt=2**63, cli=False)
    root: str = option("artifacts/judges", "where judge run folders (checkpoint.pt, losses.csv; --resume) are made")
    checkpoint_minutes: float = option(5.0, "checkpoint interval", gt=0)
    log_every: int = option(200, "losses.csv interval (steps)", ge=1, cli=False)


def sources_for(target: str, faces_root: str | os.PathLike) -> list[tuple[str, Callable[[dict], float | None], str]]:
    """The face sets and labels each judge learns from (and is evaluated on, in their 'test' split)."""
    root = Path(faces_root)
    utk = root / "utk_all"
    if not (utk / "manifest.json").is_file() and target in ("age", "gender"):
        raise FacefxError(f"{utk} is missing; prepare it first: python train/prepare.py "
                          "../shared/data/utkface/images --labels ../shared/data/utkface/labels.csv --name utk_all")
    if target == "age":
        return [(str(utk), lambda i: i.get("age"), "utk_all")]
    if target == "gender":
        return [(str(utk), lambda i: i.get("gender"), "utk_all")]
    if target == "anime":
        # Photos of every kind the effects see (selfies: all women; UTKFace: all ages, both genders) vs drawings.
        photo = [(str(root / "selfies"), lambda i: 0.0, "selfies")]
        if (utk / "manifest.json").is_file():
            photo.append((str(utk), lambda i: 0.0, "utk_all"))
        return photo + [(str(root / "anime"), lambda i: 1.0, "anime")]
    raise FacefxError(f"unknown judge {target!r}; choose one of {sorted(TARGETS)}")


def evaluate(net: nn.Module, data: LabelledFaces, target: str) -> dict:
    """Held-out metrics of a judge network: age MAE (years), or accuracy at 0.5; overall and per group."""
    judge = Judge(net, {"target": target, "resolution": data.images.shape[-1]}, Path("."))
    from facefx.train.data import to_model

    pred = torch.from_numpy(judge.predict(to_model(data.images)))
    groups = np.array(data.groups)
    out: dict = {"n_test": len(pred)}
    if target == "age":
        err = (pred - data.targets).abs()
        out["mae_years"] = round(float(err.mean()), 2)
        for name, lo, hi in (("0-17", 0, 17), ("18-30", 18, 30), ("31-54", 31, 54), ("55+", 55, 200)):
            sel = (data.targets >= lo) & (data.targets <= hi)
            if sel.any():
                out[f"mae_years_{name}"] = round(float(err[sel].mean()), 2)
                out[f"mean_pred_{name}"] = round(float(pred[sel].mean()), 1)
                out[f"mean_true_{name}"] = round(float(data.targets[sel].mean()), 1)
                out[f"n_{name}"] = int(sel.sum())
    else:
        correct = ((pred >= 0.5).float() == data.targets).float()
        out["accuracy"] = round(float(correct.mean()), 4)
        for cls in (0, 1):
            sel = data.targets == cls
            if sel.any():
                out[f"accuracy_class{cls}"] = round(float(correct[sel].mean()), 4)
        for name in sorted(set(groups)):
            sel = torch.from_numpy(groups == name)
            out[f"accuracy_{name}"] = round(float(correct[sel].mean()), 4)
        ages = torch.tensor([float(i.get("age", -1)) for i in data.items])
        adults = (ages >= 18) & (ages <= 60)
        if target == "gender" and adults.any():  # the gender effect works on adults 18-60: report them apart
            out["accuracy_18-60"] = round(float(correct[adults].mean()), 4)
    return out


class JudgeStage(Stage):
    """A judge for the training loop (facefx.train.loop): its network, step and held-out evaluation."""

    def __init__(self, cfg: JudgeConfig, ddp: Dist, seed: int, progress: bool = True):
        self.cfg, self.ddp = cfg, ddp
        self.name = f"judge {cfg.target}"
        self.g = torch.Generator().manual_seed(seed)
        self.sources = sources_for(cfg.target, cfg.faces_root)
        crops = {read_manifest(s[0], kind="faces")["crop"]["name"] for s in self.sources}
        if len(crops) != 1:
            raise FacefxError(f"the judge's face sets use different crop geometries ({sorted(crops)}); re-prepare them")
        t0 = time.time()
        self.train_faces = load_labelled(self.sources, "train", cfg.size)
        self.test = load_labelled(self.sources, "test", cfg.size)
        if progress and ddp.main:
            print(f"judge {cfg.target}: {len(self.train_faces.targets)} train / {len(self.test.targets)} test faces at "
                  f"{cfg.size} px (loaded in {time.time() - t0:.0f} s)")
        self.binary = TARGETS[cfg.target]["kind"] == "binary"
        targets = self.train_faces.targets
        # Balanced classes for binary judges (photos outnumber drawings ~4:1); uniform for age.
        if self.binary:
            counts = torch.bincount(self.train_faces.class_of, minlength=2).float()
            self.weights = (1.0 / counts)[self.train_faces.class_of]
        else:
            self.weights = torch.ones(len(targets))
        mean, std = float(targets.mean()), float(targets.std())
        self.spec = {"type": "judge_cnn", "widths": list(cfg.widths), "dropout": 0.2,
                     "out_scale": round(std, 2) if not self.binary else 1.0,
                     "out_bias": round(mean, 2) if not self.binary else 0.0}
        self.net = nets.build(self.spec).to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.optimizers = [(self.opt, 1.0)]
        self.wrapped = self.net

    def train_step(self, step: int) -> dict[str, float]:
        from facefx.train.data import to_model

        idx = torch.multinomial(self.weights, self.cfg.batch, replacement=True, generator=self.g)
        x = jitter(to_model(self.train_faces.images[idx]), self.g).contiguous(memory_format=torch.channels_last)
        y = self.train_faces.targets[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.bf16):
            out = self.wrapped(x)
        out = out.float()
        # Age: L1 in years is the reported metric itself; binary: cross-entropy on the logit.
        loss = F.binary_cross_entropy_with_logits(out, y) if self.binary else F.smooth_l1_loss(out, y, beta=2.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "generator": self.g.get_state()}

    def load_state(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.g.set_state(state["generator"].cpu())

    def evaluate(self) -> dict:
        metrics = evaluate(self.net, self.test, self.cfg.target)
        self.net.train()  # evaluate() judges in eval mode
        return metrics

    def manifest(self, folder: Path, metrics: dict, progress: dict | None = None) -> dict:
        cfg = self.cfg
        manifest = new_manifest(
            "judge", effect=None, parent=[s[0] for s in self.sources], target=cfg.target,
            output=TARGETS[cfg.target], network={"judge": self.spec}, resolution=cfg.size,
            crop=CropSpec.from_dict(read_manifest(self.sources[0][0])["crop"]).with_size(cfg.size).to_dict(),
            pixels=PIXEL_CONTRACT, config=dataclasses.asdict(cfg),
            macs=nets.count_macs(self.net, cfg.size), params=nets.count_params(self.net))
        if progress is not None:
            manifest["progress"] = progress
        manifest["metrics"] = metrics
        manifest["files"] = hash_files(folder, [WEIGHTS])
        return manifest

    def save(self, run: Path, progress: dict, metrics: dict) -> None:
        nets.save_weights(self.net, run / WEIGHTS)
        write_manifest(run, self.manifest(run, metrics, progress))


def train_judge(cfg: JudgeConfig, progress: bool = True, resume: str | os.PathLike | None = None) -> Path:
    """Train one judge on the 'train' split (in a run folder under cfg.root: checkpoints, losses.csv; resumable),
    evaluate it on 'test', and write the judge to <cfg.out>/<target>/; returns that folder."""
    if cfg.target not in TARGETS:
        raise FacefxError(f"unknown judge {cfg.target!r}; choose one of {sorted(TARGETS)}")
    final = Path(cfg.out) / cfg.target
    if final.exists():
        raise FacefxError(f"{final} already exists; move it away to retrain that judge")
    ddp, _, seed = setup("cpu", cfg.threads, cfg.seed)
    stage = JudgeStage(cfg, ddp, seed, progress)
    step, elapsed = 0, 0.0
    if resume:
        run = Path(resume)
        step, elapsed = restore(stage, run, torch.device("cpu"))
    else:
        run = Path(ddp.share(str(next_run_dir(Path(cfg.root) / cfg.target, f"{cfg.size}px"))))
        if ddp.main:
            run.mkdir(parents=True)
        ddp.barrier()
    stage.net.train()
    stage.wrapped = ddp.wrap(stage.net, torch.device("cpu"))
    result = train(stage, LoopSettings.from_config(cfg, iters=cfg.steps), run, ddp, step, elapsed, progress)
    if not ddp.main:
        return final
    metrics = {**result.metrics, "train_steps": result.step, "train_seconds": round(result.elapsed_s, 1),
               "stopped": result.stop_reason, "n_train": len(stage.train_faces.targets)}
    with staged_dir(final) as tmp:
        nets.save_weights(stage.net, tmp / WEIGHTS)
        write_manifest(tmp, stage.manifest(tmp, metrics))
    if progress:
        print(f"judge {cfg.target}: {metrics} -> {final}")
    return final


# ---- what an effect did, by its judge ------------------------------------------------------------------
EFFECT_JUDGE = {"age": "age", "gender": "gender", "style": "anime"}  # effect -> the judge that measures it
AGE_BINS = list(range(0, 101, 5))
PROB_BINS = [round(x, 2) for x in np.linspace(0, 1, 21)]


def judge_stats(effect: str, direction: str, before: np.ndarray, after: np.ndarray | None) -> dict:
    """Judge figures of one set of outputs against the inputs (after=None: the inputs alone)."""
    sign = 1.0 if direction == "AB" else -1.0
    if effect == "age":
        out = {"mean_age_before": rounded(before.mean()), "hist_bins": AGE_BINS,
               "hist_before": np.histogram(np.clip(before, 0, 100), AGE_BINS)[0].tolist()}
        if after is not None:
            shift = after - before
            out.update(mean_age_after=rounded(after.mean()), mean_shift_years=rounded(shift.mean()),
                       median_shift_years=rounded(np.median(shift)), shift_p10=rounded(np.percentile(shift, 10)),
                       shift_p90=rounded(np.percentile(shift, 90)),
                       frac_shift_5y_right_way=rounded((sign * shift >= 5).mean(), 4),
                       hist_after=np.histogram(np.clip(after, 0, 100), AGE_BINS)[0].tolist())
        return out
    key = "p_female" if effect == "gender" else "p_anime"
    out = {f"{key}_mean_before": rounded(before.mean(), 4), "hist_bins": PROB_BINS,
           "hist_before": np.histogram(before, PROB_BINS)[0].tolist()}
    if after is None:
        return out
    out.update({f"{key}_mean_after": rounded(after.mean(), 4),
                "hist_after": np.histogram(after, PROB_BINS)[0].tolist()})
    # The effect should move the judge across 0.5 in its direction: AB = towards female / anime.
    was = before < 0.5 if direction == "AB" else before >= 0.5
    now = after >= 0.5 if direction == "AB" else after < 0.5
    if effect == "gender":
        out["flip_rate"] = rounded(now[was].mean(), 4) if was.any() else None
        out["n_eligible"] = int(was.sum())  # faces the judge saw as the source gender before
    else:
        out["anime_rate_before"] = rounded((before >= 0.5).mean(), 4)
        out["anime_rate_after"] = rounded((after >= 0.5).mean(), 4)
    return out


def rounded(x, nd: int = 2) -> float | None:
    """round(float(x), nd), None kept: figures as they go into JSON results."""
    return None if x is None else round(float(x), nd)


@torch.no_grad()
def judge_generator(judge: Judge, effect: str, generator: nn.Module, faces: torch.Tensor, direction: str = "AB",
                    batch: int = 32) -> dict:
    """A judge's figures on held-out faces (N, 3, S, S) float RGB [-1, 1] before and after a generator.

    Teacher snapshots record this in their manifest, so every committed teacher says how strong its effect is.
    """
    generator = generator.eval()
    after = torch.cat([generator(faces[i:i + batch]).float() for i in range(0, len(faces), batch)])
    out = judge_stats(effect, direction, judge.predict(faces), judge.predict(after))
    out = {k: v for k, v in out.items() if not k.startswith("hist")}
    return {"judge": judge.name, "direction": direction, "faces": len(faces), **out}
