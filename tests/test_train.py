"""Teacher training: a few iterations learn, resume continues exactly, a generator rebuilds from its folder,
and the loop runs under torchrun-style DDP with two CPU processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from facefx.errors import FacefxError
from facefx.manifest import read_manifest
from facefx.train import nets
from facefx.train.cyclegan import (
    TeacherConfig,
    config_from_run,
    load_generator,
    lr_factor,
    shift_consistency,
    shift_image,
    snapshot,
    train_teacher,
    warp_image,
)


def tiny_cfg(faces: Path, root: Path, **kw) -> TeacherConfig:
    base = dict(effect="age", a=[str(faces)], b=[str(faces)], root=str(root), size=32, ngf=4, n_blocks=1, ndf=4,
                batch=2, iters=6, sample_every=3, log_every=2, bf16=False, checkpoint_minutes=100)
    base.update(kw)
    return TeacherConfig(**base)


def test_few_iterations_give_finite_losses_and_change_weights(tmp_path, faces_artifact):
    cfg = tiny_cfg(faces_artifact, tmp_path)
    torch.manual_seed(0)
    before = nets.build(cfg.generator_spec()).state_dict()
    run = train_teacher(cfg, progress=False)
    net, manifest = load_generator(run, "AB")
    after = net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    rows = (run / "losses.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and "nan" not in rows[-1] and "inf" not in rows[-1]
    assert (run / "samples" / "step_000006.png").is_file()
    assert manifest["progress"]["step"] == 6 and manifest["network"]["G_AB"]["ngf"] == 4
    assert manifest["crop"]["size"] == 32


def test_shift_loss_is_zero_for_a_shift_equivariant_map_and_positive_for_a_strided_one(tmp_path, faces_artifact):
    import random

    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(shift_image(x, 1, 2)[..., 5, 6], x[..., 4, 4])  # content moved down 1, right 2
    blur = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate")  # stride 1: moves with its input
    assert shift_consistency(blur, x, blur(x), random.Random(0)).item() < 1e-6
    # Stride 2 then nearest upsampling: equivariant only to even shifts, the aliasing a stride-2 generator has.
    strided = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Upsample(scale_factor=2))
    rng = random.Random(0)
    assert sum(shift_consistency(strided, x, strided(x), rng).item() for _ in range(8)) > 0.01
    run = train_teacher(tiny_cfg(faces_artifact, tmp_path, lambda_shift=1.0, iters=2), progress=False)
    header, row = (run / "losses.csv").read_text().splitlines()[:2]
    assert float(row.split(",")[header.split(",").index("shift")]) > 0
    assert read_manifest(run)["config"]["lambda_shift"] == 1.0


def test_warp_loss_compares_rotated_and_rescaled_outputs_where_the_warp_saw_the_image():
    import random

    x = torch.rand(2, 3, 32, 32)
    moved, inside = warp_image(x, 0.0, 1.0, 1, 2)  # no rotation or scaling: the integer shift, exactly
    assert torch.allclose(moved[..., 3:, 3:], shift_image(x, 1, 2)[..., 3:, 3:], atol=1e-6)
    assert not inside[..., 0, :].any() and inside[..., 3:, 3:].all()  # rows and columns moved in from outside
    turned, _ = warp_image(x, 90.0, 1.0, 0, 0)
    assert torch.allclose(turned, torch.rot90(x, -1, (-2, -1)), atol=1e-5)
    warp = dict(rotate=8.0, scale=0.07)
    pointwise = torch.nn.Conv2d(3, 3, 1)  # commutes with any resampling
    assert shift_consistency(pointwise, x, pointwise(x), random.Random(0), **warp).item() < 1e-5
    # An oriented 3x3 kernel (a horizontal edge filter) does not commute with rotation.
    edge = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        edge.weight.zero_()
        edge.weight[:, :, 1, 0], edge.weight[:, :, 1, 2] = -1, 1
    rng = random.Random(0)
    assert sum(shift_consistency(edge, x, edge(x), rng, **warp).item() for _ in range(4)) > 0.05


def test_warp_options_without_the_shift_loss_or_out_of_range_are_refused(tmp_path, faces_artifact):
    with pytest.raises(FacefxError, match="--lambda-shift"):
        train_teacher(tiny_cfg(faces_artifact, tmp_path, shift_rotate=8.0), progress=False)
    with pytest.raises(FacefxError, match="0 to 0.5"):
        train_teacher(tiny_cfg(faces_artifact, tmp_path, lambda_shift=1.0, shift_scale=2.0), progress=False)
    assert not list(tmp_path.rglob("manifest.json"))  # nothing written


def test_resume_continues_at_same_step_and_learning_rate(tmp_path, faces_artifact):
    cfg = tiny_cfg(faces_artifact, tmp_path, iters=8, decay_start=0.5)
    run = train_teacher(dataclasses.replace(cfg, max_minutes=1e-9), progress=False)  # stops after one iteration
    first = read_manifest(run)["progress"]
    assert first["step"] == 1
    resumed_cfg = config_from_run(run)
    assert resumed_cfg.iters == 8 and lr_factor(first["step"], resumed_cfg) == first["lr_factor"]
    train_teacher(dataclasses.replace(resumed_cfg, max_minutes=0), resume=run, progress=False)
    prog = read_manifest(run)["progress"]
    assert prog["step"] == 8 and prog["lr_factor"] == 0.0
    assert [line.split(",")[0] for line in (run / "losses.csv").read_text().splitlines()[1:]] == ["2", "4", "6", "8"]


def test_cli_resume_may_lower_the_identity_loss_but_keeps_the_networks(tmp_path, faces_artifact):
    run = train_teacher(tiny_cfg(faces_artifact, tmp_path, iters=2), progress=False)
    cmd = [sys.executable, str(REPO / "train" / "teacher.py"), "--resume", str(run), "--iters", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --ngf is a network option: refused on resume in one line, the run untouched
    proc = subprocess.run(cmd + ["--ngf", "64"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "--ngf (the run's: 4) cannot change on resume" in proc.stderr
    assert proc.stderr.count("\n") == 1 and read_manifest(run)["progress"]["step"] == 2
    proc = subprocess.run(cmd + ["--lambda-idt", "0"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-1500:]
    m = read_manifest(run)
    assert m["progress"]["step"] == 3 and m["config"]["lambda_idt"] == 0.0 and m["config"]["ngf"] == 4


def test_kill_saves_a_checkpoint_at_the_current_step(tmp_path, faces_artifact):
    """`kill PID` on a background run (nohup) stops it at once with its work saved, not lost since the last save."""
    import signal
    import time

    cmd = [sys.executable, str(REPO / "train" / "teacher.py"), "--effect", "age", "--a", str(faces_artifact),
           "--b", str(faces_artifact), "--root", str(tmp_path), "--size", "32", "--ngf", "4", "--n-blocks", "1",
           "--ndf", "4", "--iters", "100000", "--no-bf16", "--checkpoint-minutes", "100", "--sample-every", "100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("age/*/losses.csv")) and time.time() < deadline:  # a first 50 steps logged
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-1500:]  # saved, and the exit code says it was stopped, not finished
    assert "interrupted at step" in out and "stopped by SIGTERM" in err
    step = read_manifest(next((tmp_path / "age").iterdir()))["progress"]["step"]
    assert 50 <= step < 100000


def test_generator_rebuilt_from_manifest_gives_same_output(tmp_path, faces_artifact):
    run = train_teacher(tiny_cfg(faces_artifact, tmp_path, iters=2), progress=False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    net1, _ = load_generator(run, "AB")
    net2, _ = load_generator(run, "AB")
    assert torch.equal(net1(x), net2(x))
    snap = snapshot(run, tmp_path / "snap")  # the committed, fp16 form still rebuilds and resumes
    net3, _ = load_generator(snap, "AB")
    assert torch.allclose(net3(x), net1(x), atol=2e-2)
    judged = read_manifest(snap)["metrics"]["judge"]  # the snapshot says how strong its effect is, by the judge
    assert judged["AB"]["judge"] == "age" and judged["AB"]["faces"] == 6 and judged["BA"]["faces"] == 6
    assert abs(judged["AB"]["mean_shift_years"]) < 100 and 0 <= judged["AB"]["frac_shift_5y_right_way"] <= 1
    cont = train_teacher(dataclasses.replace(config_from_run(snap), iters=3), resume=snap, progress=False)
    assert cont != snap and read_manifest(cont)["progress"]["step"] == 3  # the snapshot itself is left as it was


def test_init_warm_starts_a_new_run_from_a_teacher_snapshot(tmp_path, faces_artifact):
    """--init: an earlier teacher's four networks, a new run at step 0 (new data and schedule); another network
    size is refused with one clear error."""

    first = train_teacher(tiny_cfg(faces_artifact, tmp_path, iters=2), progress=False)
    snap = snapshot(first, tmp_path / "snap", judge=False)
    run = train_teacher(tiny_cfg(faces_artifact, tmp_path, iters=0, init=str(snap)), progress=False)
    assert run != first and read_manifest(run)["progress"]["step"] == 0
    lineage = read_manifest(snapshot(run, tmp_path / "snap2", judge=False))["lineage"]  # where it came from
    assert [s["stage"] for s in lineage] == ["trained from scratch", f"warm start from {snap}"]
    assert lineage[0]["iters"] == 2 and lineage[1]["iters"] == 0
    for direction in ("AB", "BA"):
        warm, _ = load_generator(run, direction)
        old, _ = load_generator(snap, direction)
        assert all(torch.allclose(a.float(), b.float(), atol=1e-3)
                   for a, b in zip(warm.state_dict().values(), old.state_dict().values()))
    with pytest.raises(FacefxError, match="differ from this run"):
        train_teacher(tiny_cfg(faces_artifact, tmp_path, iters=0, ngf=8, init=str(snap)), progress=False)


def test_saturated_generator_pixels_still_get_gradients_but_stay_in_range():
    net = nets.build({"type": "resnet_generator", "ngf": 4, "n_blocks": 1})
    with torch.no_grad():
        net.head[1].bias.fill_(5.0)  # push every pixel far past +1
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    y = net(x)
    assert y.max() <= 1.0  # the output is clamped to the pixel range ...
    y.sum().backward()
    assert net.head[1].bias.grad.abs().min() > 0  # ... yet a loss can still pull saturated pixels back
    net.eval()  # inference (and export) is a plain clamp
    assert torch.equal(net(x).detach(), torch.ones_like(x))


def test_mac_counter_on_a_layer_with_known_cost():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)  # 8 outputs x 3*3*3 MACs per pixel
    assert nets.count_macs(conv, 16) == 16 * 16 * 8 * 27
    assert nets.count_macs(nets.build({"type": "student_generator"}), 256) <= 0.5e9


def test_two_process_ddp_with_gloo(tmp_path, faces_artifact):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(REPO / "train/teacher.py"), "--effect", "age", "--a", str(faces_artifact), "--b", str(faces_artifact),
           "--root", str(tmp_path), "--size", "32", "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--iters", "2",
           "--no-bf16", "--sample-every", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    run = next((tmp_path / "age").iterdir())
    progress = read_manifest(run)["progress"]
    assert progress["step"] == 2 and progress["images_seen_per_domain"] == 2 * 1 * 2  # 2 steps x batch 1 x 2 ranks
