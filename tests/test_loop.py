"""The one training loop (facefx.train.loop) and what every stage gets from it: the schedule, the checkpoint rule,
resume (one rule for which options may change, the same for teachers, students and judges), the non-finite check,
interrupts, and DDP with two gloo processes for students, judges and pair generation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from facefx.errors import FacefxError
from facefx.manifest import read_manifest
from facefx.train import loop
from facefx.train.cyclegan import LOSS_SETTINGS, TeacherConfig, lr_factor, train_teacher
from facefx.train.distill import PairsConfig, StudentConfig, StudentStage, make_pairs, train_student
from facefx.train.judges import JudgeConfig

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# ---- a stage of one linear layer: the loop's duties, in milliseconds ----------------------------------------------
class LineStage(loop.Stage):
    """Fits y = 2x with one weight; steps draw their inputs from torch's global generator (so resume must restore
    it); `fail_at` makes a step raise (KeyboardInterrupt) or return a NaN loss."""

    name = "line"

    def __init__(self, fail_at: int = -1, fail_with: str = ""):
        self.net = torch.nn.Linear(1, 1, bias=False)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.optimizers = [(self.opt, 1.0)]
        self.fail_at, self.fail_with = fail_at, fail_with
        self.saves: list[int] = []
        self.lrs: list[float] = []

    def train_step(self, step: int) -> dict[str, float]:
        if step == self.fail_at and self.fail_with == "interrupt":
            raise KeyboardInterrupt
        self.lrs.append(self.opt.param_groups[0]["lr"])
        x = torch.randn(4, 1)
        loss = ((self.net(x) - 2 * x) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float("nan") if step == self.fail_at and self.fail_with == "nan" else float(loss)}

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict()}

    def load_state(self, state: dict) -> None:
        self.net.load_state_dict(state["net"]), self.opt.load_state_dict(state["opt"])

    def save(self, run: Path, progress: dict, metrics: dict) -> None:
        self.saves.append(progress["step"])


def _settings(iters: int, **kw) -> loop.LoopSettings:
    return loop.LoopSettings(loop.Schedule(iters, 0.1, decay_start=0.5), **{"checkpoint_minutes": 100, **kw})


def test_schedule_is_constant_then_decays_linearly_and_can_warm_up():
    s = loop.Schedule(10, 2.0, decay_start=0.6)
    assert [s.factor(i) for i in range(10)] == pytest.approx([1] * 6 + [1, 0.75, 0.5, 0.25])
    assert s.factor(10) == 0.0 and s.lr_at(8) == pytest.approx(1.0)
    w = loop.Schedule(10, 1.0, decay_start=0.2, warmup=0.2)
    assert [w.factor(i) for i in range(4)] == pytest.approx([0.5, 1.0, 1.0, 0.875])
    cfg = TeacherConfig(effect="x", a=[], b=[], iters=8, decay_start=0.25)  # the teachers' schedule is the loop's
    assert [lr_factor(i, cfg) for i in range(8)] == [loop.Schedule(8, 1.0, 0.25).factor(i) for i in range(8)]


def test_every_iteration_sets_the_scheduled_lr_and_logs_it(tmp_path):
    stage = LineStage()
    loop.train(stage, _settings(4, log_every=1), tmp_path, loop.Dist(), progress=False)
    assert stage.lrs == pytest.approx([0.1, 0.1, 0.1, 0.05])
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert rows[0] == "step,lr,elapsed_s,loss" and [r.split(",")[:2] for r in rows[1:]][-1] == ["4", "0"]


def test_a_zero_checkpoint_interval_checkpoints_every_iteration(tmp_path):
    """One comparison rule for every stage: a checkpoint is due once checkpoint_minutes have passed (>=)."""
    stage = LineStage()
    loop.train(stage, _settings(3, checkpoint_minutes=0), tmp_path, loop.Dist(), progress=False)
    assert stage.saves == [1, 2, 3, 3]  # each iteration, then the final checkpoint
    stage = LineStage()
    loop.train(stage, _settings(3), tmp_path, loop.Dist(), progress=False)
    assert stage.saves == [3]


def test_a_non_finite_loss_stops_with_one_line_and_saves_nothing(tmp_path):
    stage = LineStage(fail_at=2, fail_with="nan")
    with pytest.raises(FacefxError, match="non-finite at step 2.*lower --lr"):
        loop.train(stage, _settings(5), tmp_path, loop.Dist(), progress=False)
    assert stage.saves == [] and not (tmp_path / loop.CHECKPOINT).exists()


def test_an_interrupt_saves_the_step_reached_and_resume_continues_exactly(tmp_path):
    torch.manual_seed(0)
    whole = LineStage()
    (tmp_path / "whole").mkdir()
    loop.train(whole, _settings(6), tmp_path / "whole", loop.Dist(), progress=False)
    torch.manual_seed(0)
    first = LineStage(fail_at=3, fail_with="interrupt")
    result = loop.train(first, _settings(6), tmp_path, loop.Dist(), progress=False)
    assert (result.stop_reason, result.step, first.saves) == ("interrupted", 3, [3])
    torch.manual_seed(123)  # whatever the generator did since: the checkpoint's state is restored
    second = LineStage()
    step, _ = loop.restore(second, tmp_path, torch.device("cpu"))
    loop.train(second, _settings(6), tmp_path, loop.Dist(), step=step, progress=False)
    assert second.saves == [6] and torch.equal(second.net.weight, whole.net.weight)


# ---- resume: one rule -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("saved, losses, network", [
    (TeacherConfig(effect="age", a=["x"], b=["y"]), LOSS_SETTINGS, {"ngf": 64}),
    (StudentConfig(pairs="p"), StudentStage.LOSS_SETTINGS, {"widths": (4, 8)}),
    (JudgeConfig(target="age"), (), {"widths": [8]}),
])
def test_resume_honours_the_schedule_and_refuses_the_network_the_same_way_for_every_stage(saved, losses, network):
    cfg = loop.resume_config(saved, {"lr": 1e-5, "max_minutes": 3.0, "iters": 7, "steps": 7})
    assert cfg.lr == 1e-5 and cfg.max_minutes == 3.0 and getattr(cfg, "iters", getattr(cfg, "steps", None)) == 7
    with pytest.raises(FacefxError, match="cannot change on resume"):
        loop.resume_config(saved, network, losses)
    name, value = next(iter(network.items()))
    same = {name: getattr(saved, name)}
    assert loop.resume_config(saved, same, losses) == saved  # the run's own value is no change
    if losses:  # a loss weight may change
        assert getattr(loop.resume_config(saved, {losses[0]: 0.25}, losses), losses[0]) == 0.25


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory, faces_artifact) -> Path:
    root = tmp_path_factory.mktemp("loop")
    teacher = train_teacher(TeacherConfig(effect="age", a=[str(faces_artifact)], b=[str(faces_artifact)],
                                          root=str(root / "t"), size=32, ngf=4, n_blocks=1, ndf=4, batch=2, iters=2,
                                          bf16=False), progress=False)
    return make_pairs(PairsConfig(teacher=str(teacher), root=str(root / "p"), size=32, augment=1,
                                  judge_filter=False, batch=4), progress=False)


def test_student_cli_resume_honours_lr_and_refuses_a_network_option(tmp_path, tiny_pairs):
    """The students' command line follows the teachers' rule (test_train.py): an explicit --lr was silently
    ignored on a student's resume before."""
    run = train_student(StudentConfig(pairs=str(tiny_pairs), root=str(tmp_path), widths=(4, 8), n_blocks=1, batch=2,
                                      iters=2, bf16=False, log_every=1), progress=False)
    cmd = [sys.executable, str(REPO / "distill" / "student.py"), "--resume", str(run), "--iters", "3"]
    proc = subprocess.run(cmd + ["--n-blocks", "3"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and "--n-blocks (the run's: 1) cannot change on resume" in proc.stderr
    assert read_manifest(run)["progress"]["step"] == 2
    proc = subprocess.run(cmd + ["--lr", "1e-5"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-1500:]
    m = read_manifest(run)
    assert m["progress"]["step"] == 3 and m["config"]["lr"] == 1e-5 and m["config"]["n_blocks"] == 1
    assert (run / "losses.csv").read_text().splitlines()[-1].startswith("3,0,")  # the last step's lr: 0


def test_student_decay_start_is_settable(tmp_path, tiny_pairs):
    run = train_student(StudentConfig(pairs=str(tiny_pairs), root=str(tmp_path), widths=(4, 8), n_blocks=1, batch=2,
                                      iters=4, lr=1e-3, decay_start=0.0, bf16=False, log_every=1), progress=False)
    lrs = [float(r.split(",")[1]) for r in (run / "losses.csv").read_text().splitlines()[1:]]
    assert lrs == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0])


# ---- DDP: two gloo processes ---------------------------------------------------------------------------------------
def _torchrun(args: list[str], cwd: Path, port: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=cwd)


def test_student_trains_with_two_process_ddp(tmp_path, tiny_pairs):
    r = _torchrun([str(REPO / "distill/student.py"), "--pairs", str(tiny_pairs), "--root", str(tmp_path),
                   "--widths", "4,8", "--n-blocks", "1", "--batch", "2", "--iters", "2", "--no-bf16"],
                  tmp_path, 29521)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = (tmp_path / "age").iterdir()  # one run folder: both processes wrote to rank 0's
    progress = read_manifest(run)["progress"]
    assert progress["step"] == 2 and progress["processes"] == 2
    assert r.stdout.count("done at step 2/2") == 1  # rank 0 reports


def test_judge_trains_with_two_process_ddp_and_resumes(tmp_path, faces_artifact):
    faces_root = tmp_path / "faces"
    faces_root.mkdir()
    (faces_root / "utk_all").symlink_to(faces_artifact, target_is_directory=True)
    args = [str(REPO / "benchmarks/judges.py"), "age", "--out", str(tmp_path / "out"), "--faces-root",
            str(faces_root), "--size", "32", "--widths", "4,8", "--steps", "3", "--batch", "4", "--no-bf16"]
    r = _torchrun(args, tmp_path, 29523)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = (tmp_path / "artifacts" / "judges" / "age").iterdir()  # the run folder (checkpoint, losses)
    assert read_manifest(run)["progress"]["processes"] == 2 and (run / loop.CHECKPOINT).is_file()
    judge = read_manifest(tmp_path / "out" / "age")
    assert judge["metrics"]["train_steps"] == 3 and "mae_years" in judge["metrics"]
    # resume, one process: a finished judge is not overwritten; a widths change is refused like any network change
    cli = [sys.executable, str(REPO / "benchmarks/judges.py"), "--resume", str(run), "--steps", "4"]
    r = subprocess.run(cli + ["--widths", "8,8"], capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and "--widths (the run's: [4, 8]) cannot change on resume" in r.stderr
    r = subprocess.run(cli, capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    (tmp_path / "out" / "age").rename(tmp_path / "out" / "age.first")
    r = subprocess.run(cli, capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_manifest(tmp_path / "out" / "age")["metrics"]["train_steps"] == 4


def test_pairs_split_across_two_processes_are_the_pairs_of_one(tmp_path, tiny_pairs):
    teacher = read_manifest(tiny_pairs)["parent"]["path"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1): the same kernels, the same sums
    try:
        one = make_pairs(PairsConfig(teacher=teacher, root=str(tmp_path / "one"), size=32, augment=1,
                                     judge_filter=False, batch=2), progress=False)
    finally:
        torch.set_num_threads(threads)
    r = _torchrun([str(REPO / "distill/pairs.py"), "--teacher", teacher, "--root", str(tmp_path / "two"),
                   "--size", "32", "--augment", "1", "--no-judge-filter", "--batch", "2"], tmp_path, 29525)
    assert r.returncode == 0, r.stderr[-2000:]
    (two,) = (tmp_path / "two" / "age").iterdir()
    for name in ("inputs.npy", "targets.npy", "test_inputs.npy", "test_targets.npy"):
        a, b = np.load(one / name), np.load(two / name)
        assert a.shape == b.shape and len(a) > 2 and np.array_equal(a, b), name
    assert read_manifest(two)["counts"] == read_manifest(one)["counts"]

