"""Shared pretraining pieces with exact answers: masks, targets, losses, EMA, queue, schedules, LAMB."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from angioseg.pretrain.losses import (
    denormalize_target,
    info_nce,
    masked_mse,
    moco_logits,
    normalize_target,
)
from angioseg.pretrain.masking import num_masked, patchify, random_patch_mask, unpatchify, upsample_mask
from angioseg.pretrain.momentum import cosine_momentum, ema_update, momentum_copy
from angioseg.pretrain.optim import Lamb, OptimSpec, lr_factor, weight_decay_at


@pytest.mark.parametrize(
    ("grid", "ratio", "masked"),
    [((14, 14), 0.65, 127), ((16, 16), 0.6, 154), ((16, 16), 0.5, 128), ((4, 4), 0.0, 0)],
)
def test_mask_count_is_exact_per_image(grid: tuple[int, int], ratio: float, masked: int) -> None:
    # CM-UNet at 224 px: 127 of 196 patches; SparK at 256: keeps round(256 * 0.4) = 102; MAE: half.
    assert num_masked(grid[0] * grid[1], ratio) == masked
    m = random_patch_mask(8, grid, ratio)
    assert m.shape == (8, *grid) and m.dtype == torch.bool
    assert m.flatten(1).sum(1).tolist() == [masked] * 8
    if 0 < masked:
        assert len({tuple(r.tolist()) for r in m.flatten(1)}) > 1  # each image its own mask


def test_upsampled_mask_covers_whole_patches() -> None:
    m = random_patch_mask(2, (3, 4), 0.5)
    px = upsample_mask(m, 16)
    assert px.shape == (2, 1, 48, 64)
    blocks = px[:, 0].reshape(2, 3, 16, 4, 16)
    assert torch.equal(blocks.all(2).all(3), m) and torch.equal(blocks.any(2).any(3), m)


def test_patchify_roundtrip_and_order() -> None:
    x = torch.arange(2 * 1 * 32 * 48, dtype=torch.float32).reshape(2, 1, 32, 48)
    p = patchify(x, 16)
    assert p.shape == (2, 6, 256)
    assert torch.equal(p[0, 1], x[0, 0, :16, 16:32].flatten())  # row-major patch order
    assert torch.equal(unpatchify(p, 16, (32, 48)), x)


def test_patch_normalised_target() -> None:
    x = torch.randn(2, 1, 32, 32) * 3 + 5
    t = patchify(normalize_target(x, "patch", 16), 16)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 4), atol=1e-4)  # unbiased variance, eps 1e-6
    assert torch.allclose(denormalize_target(normalize_target(x, "patch", 16), x, "patch", 16), x, atol=1e-4)
    r = normalize_target(x, "row")
    assert torch.allclose(r.mean(-1), torch.zeros(2, 1, 32), atol=1e-5)
    with pytest.raises(ValueError, match="unknown target normalisation"):
        normalize_target(x, "pixel")


def test_masked_mse_counts_masked_pixels_only() -> None:
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert masked_mse(pred, target, mask).item() == pytest.approx((1 + 16) / 2)


def test_info_nce_matches_hand_computation() -> None:
    # Orthonormal pairs, tau = 0.5: logits [[2, 0], [0, 2]], CE = log(1 + e^-2), times 2 tau = 1.
    q = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    assert info_nce(q, torch.eye(2), tau=0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_info_nce_positive_offset_and_scale_by_hand() -> None:
    # One query [2, 0] (unit after normalising) against keys e1, e2, tau = 1: logits [1, 0].
    q, k = torch.tensor([[2.0, 0.0]]), torch.eye(2)
    assert info_nce(q, k, tau=1.0).item() == pytest.approx(2 * math.log(1 + math.exp(-1)), rel=1e-6)
    # offset 1 (the second device's query): the positive is key 1, logit 0 against 1.
    assert info_nce(q, k, tau=1.0, offset=1).item() == pytest.approx(2 * math.log(1 + math.e), rel=1e-6)
    assert info_nce(q, k, tau=1.0, scale=1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def test_info_nce_matches_reference_loop() -> None:
    torch.manual_seed(0)
    q, k, tau = torch.randn(3, 5), torch.randn(6, 5), 0.07
    qn, kn = q / q.norm(dim=1, keepdim=True), k / k.norm(dim=1, keepdim=True)
    ref = 0.0
    for i in range(3):  # positives at offset 3 (rank 1 of 2 devices with 3 images each)
        s = [float(qn[i] @ kn[j]) / tau for j in range(6)]
        ref += -(s[3 + i] - math.log(sum(math.exp(v) for v in s)))
    ref = 2 * tau * ref / 3
    assert info_nce(q, k, tau, offset=3).item() == pytest.approx(ref, rel=1e-5)


def test_moco_logits_positive_first() -> None:
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.6, 0.8]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    assert moco_logits(q, k, queue, tau=0.1)[0].tolist() == pytest.approx([6.0, 0.0, -10.0])


def test_ema_update_formula_and_frozen_copy() -> None:
    online = nn.Linear(3, 2)
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    ema_update(target, online, 0.9)
    for t, b, s in zip(target.parameters(), before, online.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * s)
    assert cosine_momentum(0.996, 0.996, 0.3) == pytest.approx(0.996)
    assert cosine_momentum(0.99, 1.0, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 1.0, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.99, 1.0, 0.5) == pytest.approx(0.995)


def test_lr_schedules() -> None:
    cmae = OptimSpec(schedule="cosine", warmup_fraction=0.1, warmup_start=1e-4)
    assert lr_factor(cmae, 0, 100, 10) == pytest.approx(1e-4)
    assert lr_factor(cmae, 5, 100, 10) == pytest.approx(1e-4 + (1 - 1e-4) * 0.5)
    assert lr_factor(cmae, 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cmae, 55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(cmae, 100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    step = OptimSpec(schedule="step", step_epochs=40, step_gamma=0.5)
    assert [lr_factor(step, s * 10, 1000, 10) for s in (0, 39, 40, 80)] == [1.0, 1.0, 0.5, 0.25]
    assert OptimSpec(lr=2e-4, scale_lr=True).peak_lr(64) == pytest.approx(5e-5)
    spark = OptimSpec(weight_decay=0.04, weight_decay_end=0.2)
    assert [weight_decay_at(spark, p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.04, 0.12, 0.2])
    with pytest.raises(ValueError, match="unknown optimiser option"):
        cmae.with_overrides({"learning_rate": 1.0})


def test_lamb_step_matches_formula() -> None:
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = Lamb([{"params": [w], "weight_decay": 0.1}], lr=0.5, betas=(0.9, 0.99), eps=0.0)
    w.grad = torch.tensor([1.0, -2.0])
    opt.step()
    # First step: m_hat = g, v_hat = g^2, so r = sign(g) + wd * w; trust = ||w|| / ||r||.
    r = torch.tensor([1.0, -1.0]) + 0.1 * torch.tensor([3.0, 4.0])
    expected = torch.tensor([3.0, 4.0]) - 0.5 * (5.0 / float(r.norm())) * r
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_views_and_corruptions_shapes() -> None:
    from angioseg.pretrain.corruptions import local_pixel_shuffle, nonlinear_intensity
    from angioseg.pretrain.views import crop_box, random_resized_crop

    torch.manual_seed(0)
    for _ in range(50):
        top, left, h, w = crop_box(64, 80, (0.2, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 64 and 0 <= left and left + w <= 80
    assert random_resized_crop(torch.randn(1, 64, 80), 32).shape == (1, 32, 32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 20)).astype(np.float32)
    one = local_pixel_shuffle(x, np.random.default_rng(1), blocks=1, max_side=20)
    assert sorted(one.ravel()) == pytest.approx(sorted(x.ravel()))  # one block: a permutation
    many = local_pixel_shuffle(x, rng, blocks=300, max_side=4)
    assert set(many.ravel().tolist()) <= set(x.ravel().tolist())
    y = nonlinear_intensity(x, np.random.default_rng(3))
    assert y.shape == x.shape and y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5
