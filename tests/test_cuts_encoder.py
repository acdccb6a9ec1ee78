"""CUTS encoder, reconstruction head and the gather helpers."""

from __future__ import annotations

import pytest
import torch

from angioseg.unsupervised.cuts import (
    CUTSModel,
    EncoderConfig,
    gather_embeddings,
    gather_patches,
)
from angioseg.unsupervised.losses import cuts_loss


def test_encoder_keeps_resolution_and_has_128_channels() -> None:
    model = CUTSModel()
    z = model(torch.randn(2, 1, 23, 31))
    assert z.shape == (2, 128, 23, 31)
    assert model.cfg.latent_dim == 128


def test_receptive_field_is_17_pixels() -> None:
    """Four 5x5 convolutions without downsampling: a pixel influences exactly a 17 x 17 window."""
    torch.manual_seed(0)
    model = CUTSModel().eval()
    x = torch.randn(1, 1, 41, 41)
    y = x.clone()
    y[0, 0, 20, 20] += 1.0
    with torch.no_grad():
        changed = (model(x) - model(y)).abs().amax(1)[0] > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (12, 28, 12, 28)


@pytest.mark.parametrize("layers", [1, 2])
def test_recon_head_shapes(layers: int) -> None:
    model = CUTSModel(EncoderConfig(in_channels=3, recon_layers=layers))
    assert model.recon(torch.randn(7, 128)).shape == (7, 3, 5, 5)


def test_recon_head_rejects_unknown_depth() -> None:
    with pytest.raises(ValueError, match="recon_layers"):
        CUTSModel(EncoderConfig(recon_layers=3))


def test_gather_embeddings_and_patches_match_indexing() -> None:
    x = torch.arange(2 * 3 * 9 * 10, dtype=torch.float32).view(2, 3, 9, 10)
    rc = torch.tensor([[[2, 2], [4, 7]], [[6, 3], [3, 5]]])
    emb = gather_embeddings(x, rc)
    patches = gather_patches(x, rc, 5)
    for b in range(2):
        for s in range(2):
            r, c = rc[b, s].tolist()
            assert torch.equal(emb[b, s], x[b, :, r, c])
            assert torch.equal(patches[b, s], x[b, :, r - 2 : r + 3, c - 2 : c + 3])


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = CUTSModel()
    x = torch.randn(2, 1, 16, 16)
    a = torch.tensor([[[4, 4], [8, 9]], [[5, 10], [11, 6]]])
    p = a + 1
    z = model(x)
    za, zp = gather_embeddings(z, a), gather_embeddings(z, p)
    recon = model.recon(za.reshape(4, 128)).view(2, 2, 1, 5, 5)
    loss, _, _ = cuts_loss(za, zp, recon, gather_patches(x, a, 5), lam=0.01, tau=0.5)
    loss.backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
        assert prm.grad.abs().sum() > 0, name
