"""The UNet: the paper's parameter count, 2D/3D shapes, odd sizes, gradients."""

from __future__ import annotations

import pytest
import torch

from angioseg.models.unet import UNet, build_model, count_parameters


def test_paper_parameter_count() -> None:
    # CM-UNet paper: 31.04 M parameters (64-128-256-512 + 1024 bottleneck, 1 input, 2 classes).
    assert round(count_parameters(UNet(width=64)) / 1e6, 2) == 31.04


@pytest.mark.parametrize(("dims", "shape"), [(2, (2, 1, 37, 50)), (3, (1, 2, 10, 20, 18))])
def test_any_size_keeps_shape(dims: int, shape: tuple[int, ...]) -> None:
    m = UNet(spatial_dims=dims, in_channels=shape[1], out_channels=3, width=4)
    assert m(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])


def test_encoder_decoder_addressable_and_rebuildable() -> None:
    m = UNet(width=4)
    feats = m.encoder(torch.randn(1, 1, 32, 32))
    assert [f.shape[1] for f in feats] == [4, 8, 16, 32, 64]
    assert feats[-1].shape[-1] == 2 and m.encoder.downsample == 16
    keys = m.state_dict().keys()
    assert all(k.split(".")[0] in {"encoder", "decoder", "head"} for k in keys)
    m2 = build_model(m.config())
    m2.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match="unknown UNet config"):
        build_model({**m.config(), "bogus": 1})


def test_every_parameter_gets_a_gradient() -> None:
    m = UNet(width=4, act="leakyrelu", dropout=0.05)
    m(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_dice_ce_loss_has_a_dice_gradient() -> None:
    """The authors' Dice term thresholded probabilities and had no gradient; ours must have one."""
    from angioseg.train.module import SegmentationModule

    module = SegmentationModule(UNet(width=4).config(), dice_weight=1.0, ce_weight=0.0)
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.7).long()
    loss = module.loss(logits, target)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    perfect = torch.cat([1 - target, target], 1).float() * 20 - 10
    assert module.loss(perfect, target) < 1e-3
