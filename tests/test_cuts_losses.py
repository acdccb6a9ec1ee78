"""NT-Xent and the CUTS-2022 ratio loss against hand-written references."""

from __future__ import annotations

import math

import pytest
import torch

from angioseg.unsupervised.losses import SETTINGS, cuts_loss, nt_xent, ratio_loss


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()))


def _ntxent_reference(a: torch.Tensor, p: torch.Tensor, tau: float) -> float:
    """SimCLR's NT-Xent written out with loops: mean over the 2S rows of each image, then over images."""
    total = 0.0
    for b in range(a.shape[0]):
        z = list(a[b]) + list(p[b])
        n = len(z)
        s = n // 2
        rows = 0.0
        for i in range(n):
            j = (i + s) % n
            denom = sum(math.exp(_cos(z[i], z[k]) / tau) for k in range(n) if k != i)
            rows += -math.log(math.exp(_cos(z[i], z[j]) / tau) / denom)
        total += rows / n
    return total / a.shape[0]


def _ratio_reference(a: torch.Tensor, p: torch.Tensor, tau: float) -> float:
    total = 0.0
    for b in range(a.shape[0]):
        s = a.shape[1]
        num = sum(math.exp(_cos(a[b, i], p[b, i]) / tau) for i in range(s))
        den = sum(math.exp(_cos(a[b, i], p[b, j]) / tau) for i in range(s) for j in range(s) if i != j)
        total += -math.log(num / den)
    return total / a.shape[0]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_nt_xent_equals_hand_written_reference(setting: str) -> None:
    torch.manual_seed(0)
    a, p = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 5, 8, dtype=torch.float64)
    tau = SETTINGS[setting].tau
    assert float(nt_xent(a, p, tau)) == pytest.approx(_ntxent_reference(a, p, tau), rel=1e-5)


def test_ratio_loss_equals_hand_written_reference() -> None:
    torch.manual_seed(1)
    a, p = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    assert float(ratio_loss(a, p, 0.5)) == pytest.approx(_ratio_reference(a, p, 0.5), rel=1e-5)


def test_nt_xent_of_identical_well_separated_pairs_is_near_its_minimum() -> None:
    a = torch.eye(4)[None] * 5  # orthogonal anchors, positives identical to them
    loss = float(nt_xent(a, a.clone(), 0.1))
    # Each row: positive at cos 1, 6 negatives at cos 0: -log(e^10 / (e^10 + 6)).
    assert loss == pytest.approx(math.log1p(6 * math.exp(-10)), abs=1e-6)


def test_published_settings_and_weighting() -> None:
    assert (SETTINGS["cuts2022"].lam, SETTINGS["cuts2022"].tau) == (0.01, 0.5)
    assert (SETTINGS["cuts2024"].lam, SETTINGS["cuts2024"].tau) == (0.001, 0.1)
    torch.manual_seed(2)
    a, p = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    recon, patches = torch.zeros(6, 1, 5, 5), torch.ones(6, 1, 5, 5)
    total, con, rec = cuts_loss(a, p, recon, patches, lam=0.01, tau=0.5)
    assert float(rec) == pytest.approx(1.0)
    assert float(total) == pytest.approx(0.01 * float(con) + 0.99)
    with pytest.raises(ValueError, match="contrastive form"):
        cuts_loss(a, p, recon, patches, 0.01, 0.5, form="infonce")
