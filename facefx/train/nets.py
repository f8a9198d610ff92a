"""Networks: CycleGAN teachers (ResNet generator, PatchGAN), the compact student, and the spec that rebuilds them.

Every model is built from a JSON-able spec dict ({"type": ..., **kwargs}) that lives in the artifact's
manifest, so a model is rebuilt from its folder alone. All generators map (B, 3, S, S) RGB [-1, 1] to the
same, and learn a residual on top of their input: at initialization they are the identity, so training
learns the *change* and keeps the input's detail (see DESIGN.md, "Compute is the constraint").
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def residual_output(x: torch.Tensor, y: torch.Tensor, training: bool) -> torch.Tensor:
    """input + residual, clamped to the pixel range [-1, 1].

    While training, the clamp passes gradients straight through: a plain clamp has zero gradient wherever a
    pixel saturates, so no loss can pull such a pixel back, and saturated blobs, once formed, stay (seen in
    CycleGAN teachers). The forward value is the same clamp either way; in eval mode (inference, export) it
    is a plain clamp, so exported graphs get a single Clip.
    """
    out = x + y
    clamped = torch.clamp(out, -1.0, 1.0)
    return out + (clamped - out).detach() if training else clamped


class UpConv(nn.Module):
    """x2 upsampling as nearest resize + conv: no checkerboard, and int8/phone friendly."""

    def __init__(self, cin: int, cout: int, bias: bool, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResnetBlock(nn.Module):
    def __init__(self, ch: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=norm == "none"), _norm(norm, ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=norm == "none"), _norm(norm, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator (Johnson et al.), with resize-conv upsampling and a residual output.

    (B, 3, S, S) RGB [-1, 1] -> (B, 3, S, S) RGB [-1, 1]; S divisible by 2**n_down.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, n_down: int = 2, norm: str = "instance",
                 residual: bool = True):
        super().__init__()
        bias = norm == "none"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=bias), _norm(norm, ngf),
                                   nn.ReLU(True)]
        ch = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias), _norm(norm, ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [UpConv(ch, ch // 2, bias), _norm(norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7))
        self.residual = residual
        if residual:  # start at the identity: output = input
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(x))
        return residual_output(x, y, self.training) if self.residual else torch.tanh(y)


class PatchDiscriminator(nn.Module):
    """The 70x70 PatchGAN (n_layers=3): (B, C, S, S) -> (B, 1, S/8 - 2, S/8 - 2) real/fake scores."""

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            cout = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, cout, 4, stride, 1, bias=norm == "none"), _norm(norm, cout),
                       nn.LeakyReLU(0.2, True)]
            ch = cout
        layers += [nn.Conv2d(ch, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StudentGenerator(nn.Module):
    """Compact U-Net student for phones and int8 (~0.44 GMAC at 256 px by default): strided-conv encoder,
    resize-conv decoder, skip
    connections by addition, BatchNorm (folded into convs at export) or none, ReLU, residual output.

    (B, 3, S, S) RGB [-1, 1] -> same; S divisible by 2**len(widths).

    global_context: the bottleneck also adds a whole-image feature (global average pool -> 1x1 conv -> ReLU ->
    1x1 conv, broadcast). Its 3x3 convs see only part of a 256 px face, but an effect such as the gender swap
    must first decide, from the whole face, which way to go; the branch costs ~33 k MACs.

    internal_scale: the U-Net runs on the input average-pooled by this factor and its residual is resized back
    (bilinear) onto the full-resolution input. Teachers work at 128 px and pairs keep the input's detail at
    256 px (target = input + upsampled teacher change), so the change to learn is low-resolution by
    construction: at scale 2 the same MACs buy twice the channels at every level, and the input's detail
    reaches the output untouched. (A perfect low-resolution residual reproduces style targets to ~38 dB.)
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64, 128), n_blocks: int = 2, norm: str = "batch",
                 up_kernel: int = 1, global_context: bool = False, internal_scale: int = 1):
        super().__init__()
        widths = tuple(widths)
        self.internal_scale = int(internal_scale)
        bias = norm == "none"

        def cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=bias), _norm(norm, cout), nn.ReLU(True))

        self.stem = cbr(3, widths[0])
        self.down = nn.ModuleList(cbr(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.mid = nn.Sequential(*[nn.Sequential(cbr(widths[-1], widths[-1]), cbr(widths[-1], widths[-1]))
                                   for _ in range(n_blocks)])
        c = widths[-1]
        self.context = (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1), nn.ReLU(True), nn.Conv2d(c, c, 1))
                        if global_context else None)
        # A 1x1 conv after the resize keeps the decoder cheap; the 3x3 "fuse" conv does the spatial mixing.
        self.up = nn.ModuleList(nn.Sequential(UpConv(b, a, bias, up_kernel), _norm(norm, a), nn.ReLU(True))
                                for a, b in zip(widths[:-1], widths[1:]))
        self.fuse = nn.ModuleList(cbr(a, a) for a in widths[:-1])
        self.head = nn.Conv2d(widths[0], 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.internal_scale
        h = self.stem(x if k == 1 else F.avg_pool2d(x, k))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = h + self.mid(h)
        if self.context is not None:
            h = h + self.context(h)
        for up, fuse, skip in zip(reversed(self.up), reversed(self.fuse), reversed(skips)):
            h = fuse(up(h) + skip)
        y = self.head(h)
        if k != 1:
            y = F.interpolate(y, scale_factor=float(k), mode="bilinear", align_corners=False)
        return residual_output(x, y, self.training)


NETWORKS = {"resnet_generator": ResnetGenerator, "patch_discriminator": PatchDiscriminator,
            "student_generator": StudentGenerator}


def build(spec: dict) -> nn.Module:
    """Rebuild a network from its manifest spec: {"type": name, **constructor kwargs}."""
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind not in NETWORKS:
        raise ValueError(f"unknown network type {kind!r}; known: {sorted(NETWORKS)}")
    return NETWORKS[kind](**kwargs)


def save_weights(model: nn.Module, path: str | Path, half: bool = False) -> None:
    """Weights only, as safetensors (no pickle: loading never runs code); written atomically."""
    from safetensors.torch import save

    from facefx.manifest import atomic_write_bytes

    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state))


def save_snapshot(dest: str | Path, manifest: dict, networks: dict[str, tuple[dict, dict]], source: str | Path) -> Path:
    """The compact, committable form of a training run: each network {name: (spec, state_dict)} rebuilt from its spec
    and saved as fp16 <name>.safetensors, and the run's manifest with those files' hashes; no optimizer state."""
    from facefx.manifest import hash_files, write_manifest

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, (spec, state) in networks.items():
        net = build(spec)
        net.load_state_dict(state)
        save_weights(net, dest / f"{name}.safetensors", half=True)
    manifest["files"] = hash_files(dest, [f"{name}.safetensors" for name in networks])
    manifest["snapshot_of"] = str(source)
    write_manifest(dest, manifest)
    return dest


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    from safetensors.torch import load_file

    state = load_file(str(path))
    ref = model.state_dict()
    model.load_state_dict({k: v.to(ref[k].dtype) for k, v in state.items()})
    return model


def widen_into(model: nn.Module, narrow_state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a narrower network's weights into `model` (same layers, every channel count >= the narrow one's) so
    that `model` computes exactly what the narrow network did (Net2Net-style widening, Chen et al. 2016).

    Each tensor's leading slice takes the narrow weights; a conv's weights from new input channels into old
    output channels are zero, so old channels never see new ones, and the head's old outputs (the image) are
    unchanged; new output channels keep their fresh initialization, so they carry signal and learn from the
    first step. Lets a wider student warm-start from a trained narrower one instead of training from scratch.
    """
    state = model.state_dict()
    if set(narrow_state) - set(state):
        raise ValueError("cannot widen: layers missing from the wider network: "
                         f"{sorted(set(narrow_state) - set(state))}")
    for name, new in state.items():
        old = narrow_state.get(name)
        if old is None or old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ValueError(f"cannot widen {name}: {None if old is None else tuple(old.shape)} -> {tuple(new.shape)}")
        old = old.to(new.dtype)
        if old.dim() == 0:  # e.g. BatchNorm's num_batches_tracked
            state[name] = old.clone()
            continue
        merged = new.clone()
        if old.dim() == 4:  # conv weight (out, in, kh, kw): old outputs read no new input
            merged[: old.shape[0]] = 0.0
        merged[tuple(slice(0, s) for s in old.shape)] = old
        state[name] = merged
    model.load_state_dict(state)
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass at (1, 3, size, size), counted on conv and linear layers."""
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.numel() * k

    def linear_hook(mod: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * mod.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total


def load_from_artifact(folder: str | Path, name: str, kind: str | None = None,
                       device: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild network `name` of an artifact from its folder alone: manifest["network"][name] + <name>.safetensors.

    Returns the network in eval mode and the manifest.
    """
    from facefx.errors import FacefxError
    from facefx.manifest import read_manifest

    folder = Path(folder)
    manifest = read_manifest(folder, kind=kind)
    network = manifest.get("network")
    spec = network.get(name) if isinstance(network, dict) else None
    weights = folder / f"{name}.safetensors"
    if spec is None or not weights.is_file():
        raise FacefxError(f"{folder} has no network {name!r} (spec or {weights.name} missing)")
    try:
        net = load_weights(build(spec), weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # an edited spec, or weights of another net
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise FacefxError(f"{folder}: network {name!r} cannot be rebuilt from its manifest and {weights.name} "
                          f"({reason}); re-create the artifact") from None
    return net.to(device).eval(), manifest
