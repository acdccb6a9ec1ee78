"""Knowledge distillation (angioseg distill): the loss, the slimmed start, and one tiny CLI run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from angioseg.models.unet import UNet
from angioseg.train.distill import distill_loss, slim_init, slim_problem
from tests.conftest import run_cli


def test_distill_loss_is_the_pixelwise_kl_times_t_squared() -> None:
    teacher = torch.tensor([[0.0, 2.0], [1.0, -1.0]]).T.reshape(1, 2, 1, 2)  # two pixels, two classes
    assert distill_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.zeros(1, 2, 1, 2)  # 50/50 everywhere
    for t in (1.0, 2.0):
        p = torch.softmax(teacher / t, 1)
        kl = (p * (p.log() - math.log(0.5))).sum(1).mean().item()
        assert distill_loss(student, teacher, t).item() == pytest.approx(kl * t * t, rel=1e-5)


def _teacher_on_channels(width: int, keep: int, seed: int = 0) -> UNet:
    """A random width-``width`` UNet in eval mode whose output depends on ``keep`` channels per map only:
    the others have zero BatchNorm scale and shift (so they are 0 after the ReLU), and the
    decoder's first convolutions ignore the upsampled channels outside a random set."""
    g = torch.Generator().manual_seed(seed)
    net = UNet(width=width, depth=3).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g).sign() * (torch.rand(n, generator=g) + 0.5))
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                off = torch.randperm(n, generator=g)[: n - n * keep // width]
                m.weight[off] = 0.0
                m.bias[off] = 0.0
        for i, block in enumerate(net.decoder.blocks):
            conv = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d))
            c = net.decoder.ups[i].out_channels
            off = torch.randperm(c, generator=g)[: c - c * keep // width]
            conv.weight[:, c + off] = 0.0
    return net


def test_slim_init_reproduces_a_teacher_that_only_uses_the_kept_channels() -> None:
    teacher = _teacher_on_channels(16, 8)
    student = UNet(width=8, depth=3)
    slim_init(student, teacher)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = teacher(x), student.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    # a plain random student differs: the test can fail
    assert not torch.allclose(UNet(width=8, depth=3).eval()(x), expected, atol=1e-2)


def test_slim_problem_names_the_mismatch() -> None:
    teacher = UNet(width=8, depth=3).config()
    assert slim_problem(UNet(width=4, depth=3).config(), teacher) is None
    assert "depth" in str(slim_problem(UNet(width=4, depth=2).config(), teacher))
    assert "wider" in str(slim_problem(UNet(width=16, depth=3).config(), teacher))
    with pytest.raises(ValueError, match="depth"):
        slim_init(UNet(width=4, depth=2), UNet(width=8, depth=3))


TINY = ["--batch-size", "2", "--steps", "2", "--epochs", "1"]


def test_distill_cli_trains_a_student_and_refuses_a_bad_start(
    tiny_model: Path, synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from angioseg.data.io import write_png
    from tests.tiny_model import held_out

    unlabeled = tmp_path / "unlabeled"
    for i, (image, _) in enumerate(held_out(3, 96, seed=7)):
        write_png(unlabeled / f"u{i}.png", image)
    run = tmp_path / "student"
    base = ["distill", "--teacher", tiny_model, "--data", synth_dir]
    assert (
        run_cli([*base, "--out", run, "--width", "4", "--depth", "3", "--unlabeled", unlabeled, *TINY]) == 0
    )
    assert "with 3 unlabeled frames" in capsys.readouterr().err
    meta = json.loads((run / "model.json").read_text(encoding="utf-8"))
    assert meta["teacher"] == str(tiny_model) and meta["model"]["width"] == 4 and meta["model"]["depth"] == 3
    teacher_meta = json.loads((tiny_model / "model.json").read_text(encoding="utf-8"))
    assert (
        meta["preprocess"] == teacher_meta["preprocess"]
    )  # the teacher's preprocessing, image size included
    summary = json.loads((run / "test" / "summary.json").read_text(encoding="utf-8"))
    assert 0.0 <= summary["dice"] <= 1.0
    assert "distill_loss" in (run / "logs" / "version_0" / "metrics.csv").read_text(encoding="utf-8")
    # a student deeper than its teacher cannot start from it: one line, exit code 2, nothing trained
    bad = tmp_path / "bad"
    assert run_cli([*base, "--out", bad, "--width", "4", "--depth", "4", *TINY]) == 2
    assert "--init scratch" in capsys.readouterr().err and not (bad / "config.yaml").exists()
