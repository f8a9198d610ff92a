"""Distillation: a tiny teacher labels faces into pairs, and a few student steps lower the loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facefx.errors import FacefxError
from facefx.manifest import read_manifest, verify_files
from facefx.train import nets
from facefx.train.cyclegan import TeacherConfig, train_teacher
from facefx.train.distill import (
    PairsConfig,
    StudentConfig,
    TeacherLabeler,
    augment_webcam,
    make_pairs,
    student_config_from_run,
    train_student,
)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, faces_artifact):
    root = tmp_path_factory.mktemp("teachers")
    cfg = TeacherConfig(effect="age", a=[str(faces_artifact)], b=[str(faces_artifact)], root=str(root), size=32, ngf=4,
                        n_blocks=1, ndf=4, batch=2, iters=2, bf16=False)
    return train_teacher(cfg, progress=False)


def test_pairs_from_a_tiny_teacher(tmp_path, tiny_teacher):
    out = make_pairs(PairsConfig(teacher=str(tiny_teacher), root=str(tmp_path), size=64, augment=1, batch=4,
                                 judge_filter=False),
                     progress=False)
    m = read_manifest(out, kind="pairs")
    verify_files(out)
    x, y = np.load(out / "inputs.npy"), np.load(out / "targets.npy")
    assert x.shape == y.shape and x.shape[1:] == (64, 64, 3) and x.dtype == np.uint8
    n_train = sum(i["split"] == "train" for i in read_manifest(m["face_sets"][0])["items"])
    assert len(x) == m["counts"]["train"] == 2 * n_train  # each face + one augmented variant
    assert m["parent"]["path"] == str(tiny_teacher) and m["crop"]["size"] == 64
    assert m["target_rule"].startswith("input + upsample")  # teacher at 32 px, student at 64 px
    assert m["metrics"]["target_sharpness_ratio_median"] > 0.8  # targets keep the input's detail


def test_swap_pairs_label_each_domain_with_its_own_generator(tmp_path, tiny_teacher):
    """--direction swap: domain A faces labelled by G_AB and domain B faces by G_BA, in one pairs artifact."""
    out = make_pairs(PairsConfig(teacher=str(tiny_teacher), direction="swap", root=str(tmp_path), size=32, augment=0,
                                 batch=4, judge_filter=False), progress=False)
    m = read_manifest(out, kind="pairs")
    x, y = np.load(out / "inputs.npy"), np.load(out / "targets.npy")
    n_train = sum(i["split"] == "train" for i in read_manifest(m["face_sets"][0])["items"])
    assert len(x) == 2 * n_train and m["direction"] == "swap" and set(m["face_sets_by_direction"]) == {"AB", "BA"}
    # The tiny teacher's domains hold the same faces: the two halves share inputs but not targets.
    assert np.array_equal(x[:n_train], x[n_train:])
    ab = TeacherLabeler(tiny_teacher, "AB")(x[:n_train])
    ba = TeacherLabeler(tiny_teacher, "BA")(x[:n_train])
    assert np.array_equal(y[:n_train], ab) and np.array_equal(y[n_train:], ba) and not np.array_equal(ab, ba)
    with pytest.raises(FacefxError, match="swap"):
        make_pairs(PairsConfig(teacher=str(tiny_teacher), direction="swap", faces=[m["face_sets"][0]],
                               root=str(tmp_path)), progress=False)


def test_low_res_teacher_targets_keep_full_resolution_detail(tiny_teacher):
    labeler = TeacherLabeler(tiny_teacher)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)  # pure high-frequency detail
    with torch.no_grad():  # an identity teacher must give the input back exactly, not a blurred copy
        for p in labeler.net.head.parameters():
            p.zero_()
    assert np.abs(labeler(x).astype(int) - x).max() <= 1


def test_strength_scales_the_teachers_change(tiny_teacher):
    """--strength 2 makes targets that change the face twice as much as the teacher does (the intensity knob)."""
    x = np.random.default_rng(1).integers(90, 170, (2, 32, 32, 3), dtype=np.uint8)  # mid-grey: nothing clips
    once = TeacherLabeler(tiny_teacher)(x).astype(int) - x
    twice = TeacherLabeler(tiny_teacher, strength=2.0)(x).astype(int) - x
    assert np.abs(once).mean() > 1  # the tiny teacher does change the face
    assert np.abs(twice - 2 * once).max() <= 2  # uint8 rounding only
    assert TeacherLabeler(tiny_teacher, strength=2.0).target_rule(64) == "input + 2 * upsample(teacher(x_low) - x_low)"
    with pytest.raises(FacefxError, match="strength"):
        TeacherLabeler(tiny_teacher, strength=0)


def test_face_mask_keeps_the_teachers_change_off_hair_and_background(tiny_teacher):
    """--face-mask: the face changes as the teacher says, the crop's corners (hair, background) stay the input's."""
    from facefx.runtime.crop import CropSpec, inner_face_radius

    x = np.random.default_rng(2).integers(90, 170, (2, 32, 32, 3), dtype=np.uint8)
    free = TeacherLabeler(tiny_teacher)(x).astype(int) - x
    masked_labeler = TeacherLabeler(tiny_teacher, face_mask=True)
    masked = masked_labeler(x).astype(int) - x
    rho = inner_face_radius(CropSpec.from_dict(masked_labeler.manifest["crop"]).with_size(32))
    face, outside = rho <= 0.9, rho >= 1.3
    assert outside.any() and face.any()
    assert np.abs(free[:, outside]).mean() > 1  # the teacher alone changes the corners too
    assert np.abs(masked[:, outside]).max() == 0
    assert np.abs(masked[:, face] - free[:, face]).max() <= 1
    assert "inner_face_mask" in masked_labeler.target_rule(64)


def test_augmentation_changes_the_face_but_keeps_shape():
    rng = np.random.default_rng(0)
    face = np.full((64, 64, 3), 120, np.uint8)
    face[20:40, 20:40] = 200
    out = augment_webcam(face, rng)
    assert out.shape == face.shape and out.dtype == np.uint8 and np.abs(out.astype(int) - face).mean() > 1


def test_few_student_steps_lower_the_loss(tmp_path, tiny_teacher):
    pairs = make_pairs(PairsConfig(teacher=str(tiny_teacher), root=str(tmp_path / "p"), size=32, augment=2,
                                   judge_filter=False, batch=8), progress=False)
    # A target the student can learn in a few steps: the teacher barely moved, so make the targets darker.
    y = np.load(pairs / "targets.npy")
    np.save(pairs / "targets.npy", (y * 0.6).astype(np.uint8))
    cfg = StudentConfig(pairs=str(pairs), root=str(tmp_path / "s"), widths=(4, 8), n_blocks=1, batch=4, iters=60,
                        lr=2e-3, bf16=False, sample_every=1000, eval_every=1000, log_every=10, lambda_gan=0.0,
                        lambda_fm=0.0)
    run = train_student(cfg, progress=False)
    rows = [line.split(",") for line in (run / "losses.csv").read_text().splitlines()]
    col = rows[0].index("G_L1")
    assert float(rows[-1][col]) < 0.7 * float(rows[1][col])
    net, m = nets.load_from_artifact(run, "G", kind="student")
    assert m["cost"]["macs"] == nets.count_macs(net, 32) and m["resolution"] == 32
    assert (run / "samples" / "step_000060.png").is_file()


@pytest.fixture
def tiny_student_config(tmp_path, tiny_teacher) -> dict:
    """StudentConfig fields for a few-second student on a tiny teacher's pairs."""
    pairs = make_pairs(PairsConfig(teacher=str(tiny_teacher), root=str(tmp_path / "p"), size=32, augment=0,
                                   judge_filter=False, batch=8), progress=False)
    return dict(pairs=str(pairs), root=str(tmp_path / "s"), widths=(4, 8), n_blocks=1, batch=2, bf16=False,
                sample_every=1000, eval_every=1000, log_every=1)


def test_student_warm_start_from_an_earlier_student(tiny_student_config):
    """--init starts from an earlier student's weights; a different architecture is refused with a clear message."""
    base = tiny_student_config
    first = train_student(StudentConfig(**base, iters=3), progress=False)
    warm = train_student(StudentConfig(**base, iters=1, lr=0.0, init=str(first)), progress=False)  # lr 0: no update
    g0, _ = nets.load_from_artifact(first, "G", kind="student")
    g1, m1 = nets.load_from_artifact(warm, "G", kind="student")
    for (name, p0), (_, p1) in zip(g0.named_parameters(), g1.named_parameters()):
        assert torch.equal(p0, p1), name
    assert m1["config"]["init"] == str(first)
    for other in ({"widths": (4, 4)}, {"n_blocks": 2}):  # narrower, or another depth: refused
        with pytest.raises(FacefxError, match="--init"):
            train_student(StudentConfig(**{**base, **other}, iters=1, init=str(first)), progress=False)
    # wider at some level: the earlier weights fill the leading channels
    wide = train_student(StudentConfig(**{**base, "widths": (6, 8)}, iters=1, lr=0.0, init=str(first)), progress=False)
    g2, _ = nets.load_from_artifact(wide, "G", kind="student")
    for (name, p0), (_, p2) in zip(g0.named_parameters(), g2.named_parameters()):
        assert torch.equal(p0, p2[tuple(slice(0, n) for n in p0.shape)]), name


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widened_student_computes_what_the_narrow_one_did(mode):
    """nets.widen_into: a wider student warm-started from a narrower one gives the same image at the start."""
    torch.manual_seed(0)
    narrow = nets.StudentGenerator((8, 16, 32), n_blocks=1, global_context=True, internal_scale=2)
    for p in narrow.parameters():  # every weight non-zero, the head included, so nothing hides behind a zero
        torch.nn.init.normal_(p, std=0.1)
    for m in narrow.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
    wide = nets.widen_into(nets.StudentGenerator((12, 16, 40), n_blocks=1, global_context=True, internal_scale=2),
                           narrow.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    narrow.train(mode == "train"), wide.train(mode == "train")
    with torch.no_grad():
        assert torch.allclose(narrow(x), wide(x), atol=1e-6)
        assert not torch.allclose(narrow(x), x, atol=1e-2)  # the narrow net really changes its input
    with pytest.raises(ValueError, match="cannot widen"):
        nets.widen_into(nets.StudentGenerator((4, 16, 32), n_blocks=1), narrow.state_dict())


def test_student_snapshot_is_a_compact_warm_start(tmp_path, tiny_student_config):
    """--snapshot writes fp16 G and D with no optimizer state; --init from it starts at those weights, D included."""
    from facefx.train.distill import snapshot_student

    base = tiny_student_config
    first = train_student(StudentConfig(**base, iters=3), progress=False)
    snap = snapshot_student(first, tmp_path / "students" / "tiny")
    assert sorted(p.name for p in snap.iterdir()) == ["D.safetensors", "G.safetensors", "manifest.json"]
    g_snap, m = nets.load_from_artifact(snap, "G", kind="student")
    assert m["snapshot_of"] == str(first) and m["progress"]["step"] == 3
    warm = train_student(StudentConfig(**base, iters=1, lr=0.0, init=str(snap)), progress=False)
    g1, _ = nets.load_from_artifact(warm, "G", kind="student")
    for (name, p0), (_, p1) in zip(g_snap.named_parameters(), g1.named_parameters()):
        assert torch.equal(p0, p1), name
    d_first = torch.load(first / "checkpoint.pt", weights_only=True)["D"]
    d_warm = torch.load(warm / "checkpoint.pt", weights_only=True)["D"]
    for name, v in d_first.items():
        if v.is_floating_point():
            assert torch.allclose(v, d_warm[name], atol=1e-3), name


def test_student_lineage_lists_every_stage_even_after_the_init_is_overwritten(tmp_path, tiny_student_config):
    """A warm-started student records the stages behind it when it starts, so snapshotting it over the very folder
    it started from (students/<effect>, as shipped) still names the earlier run, and a resume keeps them."""
    from facefx.train.distill import snapshot_student

    base = tiny_student_config
    first = train_student(StudentConfig(**base, iters=3), progress=False)
    shipped = snapshot_student(first, tmp_path / "students" / "tiny")
    second = train_student(StudentConfig(**base, iters=2, init=str(shipped)), progress=False)
    snapshot_student(second, shipped)  # the new student replaces the one it came from
    lineage = read_manifest(shipped)["lineage"]
    assert [s["stage"] for s in lineage] == ["trained from scratch", f"warm start from {shipped}"]
    assert [s["iters"] for s in lineage] == [3, 2]
    resumed = train_student(dataclasses.replace(student_config_from_run(second), iters=3), resume=second,
                            progress=False)
    assert [s["iters"] for s in read_manifest(resumed)["lineage"]] == [3, 3]


def test_moving_average_generator_is_what_ships_and_survives_resume(tmp_path, tiny_student_config):
    """--ema: G.safetensors, the snapshot and the evaluation are the averaged weights; the raw ones stay in the
    checkpoint for --resume, which carries the average on instead of restarting it."""
    from facefx.train.distill import snapshot_student

    base = {**tiny_student_config, "lr": 1e-2}
    run = train_student(StudentConfig(**base, iters=4, ema=0.5), progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    shipped, _ = nets.load_from_artifact(run, "G", kind="student")
    for name, v in shipped.state_dict().items():
        assert torch.equal(v, state["G_ema"][name]), name
    w = "head.weight"
    assert not torch.allclose(state["G"][w], state["G_ema"][w])  # the average lags the raw weights
    snap, _ = nets.load_from_artifact(snapshot_student(run, tmp_path / "snap"), "G", kind="student")
    assert torch.allclose(snap.state_dict()[w], state["G_ema"][w].half().float())
    resumed = train_student(dataclasses.replace(student_config_from_run(run), iters=5), resume=run, progress=False)
    after = torch.load(resumed / "checkpoint.pt", weights_only=True)
    # one more update: 0.5 * previous average + 0.5 * new raw weights (a restarted average would equal the raw)
    expected = 0.5 * state["G_ema"][w] + 0.5 * after["G"][w]
    assert torch.allclose(after["G_ema"][w], expected, atol=1e-6)
    with pytest.raises(FacefxError, match="--ema"):
        train_student(StudentConfig(**base, iters=1, ema=1.0), progress=False)


def test_discriminator_learning_rate_ratio(tiny_student_config):
    """--lr-d-ratio K: the discriminator steps at K times the generator's rate; a non-positive K is refused."""
    run = train_student(StudentConfig(**tiny_student_config, iters=2, lr=1e-4, lr_d_ratio=4.0), progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["opt_D"]["param_groups"][0]["lr"] == pytest.approx(4 * state["opt_G"]["param_groups"][0]["lr"])
    with pytest.raises(FacefxError, match="--lr-d-ratio"):
        train_student(StudentConfig(**tiny_student_config, iters=1, lr_d_ratio=0.0), progress=False)


def test_global_context_lets_a_corner_change_the_opposite_corner():
    """Without the branch a 64 px student's output pixel sees only its neighbourhood; with it, the whole face (what a
    two-way effect needs to decide its direction). Earlier students' specs (no key) still build without it."""
    def corner_effect(spec: dict) -> float:
        torch.manual_seed(0)
        net = nets.build(spec).eval()
        torch.nn.init.normal_(net.head.weight, std=0.05)
        x = torch.zeros(1, 3, 64, 64)
        x2 = x.clone()
        x2[..., :8, :8] = 0.8  # something in the top-left corner
        with torch.no_grad():
            return float((net(x2) - net(x))[..., -8:, -8:].abs().max())  # seen in the bottom-right corner?

    spec = {"type": "student_generator", "widths": [4, 8], "n_blocks": 1}
    assert corner_effect(spec) == 0.0
    assert corner_effect({**spec, "global_context": True}) > 1e-6  # small (1/64 of the mean) but there
    cfg = StudentConfig(pairs="", global_context=True)
    assert nets.build(cfg.generator_spec()).context is not None
    assert "global_context" not in StudentConfig(pairs="").generator_spec()


def test_half_resolution_student_passes_fine_detail_through_and_costs_a_quarter():
    """internal_scale 2: the U-Net sees the face average-pooled, so detail that pooling removes (a pattern that
    averages to zero over each 2x2 block) reaches the output untouched, whatever the weights; the same widths
    cost exactly a quarter of the MACs."""
    spec = {"type": "student_generator", "widths": [4, 8], "n_blocks": 1, "internal_scale": 2}
    torch.manual_seed(0)
    net = nets.build(spec).eval()
    torch.nn.init.normal_(net.head.weight, std=0.05)
    x = torch.rand(1, 3, 32, 32) * 0.8 - 0.4
    detail = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(16, 16) * 0.1  # zero mean on every 2x2 block
    with torch.no_grad():
        change = net(x + detail) - net(x)
        own_change = float((net(x) - x).abs().max())
    assert torch.allclose(change, detail.expand_as(change), atol=1e-5)
    assert own_change > 1e-3  # and the net does change the face
    full = nets.build({**spec, "internal_scale": 1})
    assert nets.count_macs(net, 32) * 4 == nets.count_macs(full, 32)
    assert StudentConfig(pairs="", internal_scale=2).generator_spec()["internal_scale"] == 2
    assert "internal_scale" not in StudentConfig(pairs="").generator_spec()  # earlier students' specs unchanged


def test_discriminator_scale_judges_a_downscaled_view_and_old_runs_keep_full_scale(tmp_path, tiny_teacher):
    """--d-scale 2: the PatchGAN sees (input, output) at half size; a run made before the option resumes at 1."""
    import dataclasses
    import json

    from facefx.train.distill import _d_view, student_config_from_run

    x = torch.rand(2, 6, 64, 64) * 2 - 1
    assert _d_view(x, 2).shape == (2, 6, 32, 32) and _d_view(x, 1) is x
    assert torch.allclose(_d_view(x, 2).mean(), x.mean(), atol=1e-2)  # an average, not a crop
    pairs = make_pairs(PairsConfig(teacher=str(tiny_teacher), root=str(tmp_path / "p"), size=64, augment=0,
                                   judge_filter=False, batch=8, max_faces=4), progress=False)
    run = train_student(StudentConfig(pairs=str(pairs), root=str(tmp_path / "s"), widths=(4, 8), n_blocks=1, batch=2,
                                      bf16=False, iters=2, internal_scale=2, d_scale=2), progress=False)
    assert student_config_from_run(run).d_scale == 2
    with pytest.raises(FacefxError, match="--d-scale 4"):  # 16 px is too small for the PatchGAN: one clear line
        train_student(dataclasses.replace(student_config_from_run(run), d_scale=4, iters=1), progress=False)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["config"]["d_scale"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert student_config_from_run(run).d_scale == 1


def test_teacher_feature_distillation_trains_adapters_that_never_ship(tmp_path, tiny_teacher):
    """--lambda-teacher-feat: 1x1 adapters map the student's decoder onto the teacher's features at the same
    resolutions; the feature loss falls, the student's weights and spec are those of a plain student (nothing to
    export), a resume restores the adapters, and pairs that no single teacher direction labelled are refused."""
    import dataclasses

    from facefx.train.distill import student_config_from_run

    pairs = make_pairs(PairsConfig(teacher=str(tiny_teacher), root=str(tmp_path / "p"), size=64, augment=1,
                                   judge_filter=False, batch=8), progress=False)
    base = dict(pairs=str(pairs), root=str(tmp_path / "s"), widths=(4, 8, 16, 32), n_blocks=1, batch=4, lr=2e-3,
                bf16=False, internal_scale=2, sample_every=1000, eval_every=1000, log_every=5, lambda_gan=0.0,
                lambda_fm=0.0, lambda_l1=0.0)
    run = train_student(StudentConfig(**base, iters=80, lambda_teacher_feat=1.0), progress=False)
    rows = [line.split(",") for line in (run / "losses.csv").read_text().splitlines()]
    col = rows[0].index("G_TF")
    assert float(rows[-1][col]) < 0.7 * float(rows[1][col])
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert len(state["adapters"]) == 2 * 3  # a weight and a bias per teacher level (8, 16 and 32 px)
    plain = nets.build(StudentConfig(**base).generator_spec())
    assert set(state["G"]) == set(plain.state_dict())  # no adapter in what ships
    resumed = train_student(dataclasses.replace(student_config_from_run(run), iters=81), resume=run, progress=False)
    assert torch.load(resumed / "checkpoint.pt", weights_only=True)["step"] == 81
    swap = make_pairs(PairsConfig(teacher=str(tiny_teacher), root=str(tmp_path / "p"), size=64, augment=0,
                                  direction="swap", judge_filter=False, batch=8, max_faces=4), progress=False)
    with pytest.raises(FacefxError, match="one teacher direction"):
        train_student(StudentConfig(**{**base, "pairs": str(swap)}, iters=1, lambda_teacher_feat=1.0), progress=False)
    with pytest.raises(FacefxError, match="--internal-scale 2"):  # student U-Net at 64 px, teacher at 32 px
        train_student(StudentConfig(**{**base, "internal_scale": 1}, iters=1, lambda_teacher_feat=1.0), progress=False)
