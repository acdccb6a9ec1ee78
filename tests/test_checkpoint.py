"""Checkpoints: safetensors + JSON, rebuildable, refusing foreign or mismatched files; weight transfer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from angioseg.errors import CheckpointError
from angioseg.models.unet import UNet
from angioseg.train.checkpoint import load_model, load_pretrained, save_checkpoint, save_run_model


def test_roundtrip_rebuilds_model(tmp_path: Path) -> None:
    m = UNet(width=4).eval()
    save_run_model(tmp_path, m, {"image_size": 64})
    m2, meta = load_model(tmp_path)
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(m(x), m2(x)) and meta["preprocess"]["image_size"] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_foreign_and_broken_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not an angioseg checkpoint"):
        load_model(tmp_path / "x.safetensors")
    (tmp_path / "x.json").write_text(
        json.dumps({"format": "angioseg-checkpoint", "task": "segmentation", "model": {}})
    )
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not an angioseg checkpoint|run folder"):
        load_model(tmp_path / "x.json".replace("json", "pt"))


def test_weights_not_matching_config(tmp_path: Path) -> None:
    save_run_model(tmp_path, UNet(width=4), {})
    meta = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    meta["model"]["width"] = 8
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match the model config"):
        load_model(tmp_path)


def _pretrain_ckpt(path: Path, model: UNet, keys: tuple[str, ...] = ("encoder.", "decoder.")) -> Path:
    state = {k: v for k, v in model.state_dict().items() if k.startswith(keys)}
    return save_checkpoint(path, state, {"task": "pretrain", "method": "mae", "model": model.config()})


def test_transfer_counts_and_never_the_head(tmp_path: Path) -> None:
    src = UNet(width=4)
    with torch.no_grad():
        for p in src.parameters():
            p.fill_(0.5)
    path = _pretrain_ckpt(tmp_path / "pre", src)
    dst = UNet(width=4)
    head_before = dst.head.weight.clone()
    rep = load_pretrained(dst, path)
    n_enc = sum(1 for k in src.state_dict() if k.startswith("encoder."))
    n_dec = sum(1 for k in src.state_dict() if k.startswith("decoder."))
    assert rep.tensors == n_enc + n_dec and rep.transfer == "encoder+decoder" and rep.method == "mae"
    assert torch.equal(dst.head.weight, head_before)
    assert all(torch.all(p == 0.5) for p in dst.encoder.parameters())
    dst2 = UNet(width=4)
    rep2 = load_pretrained(dst2, path, "encoder")
    assert rep2.tensors == n_enc and not torch.all(next(dst2.decoder.parameters()) == 0.5)
    with pytest.raises(CheckpointError, match="checkpoint is not|segmentation needs"):
        load_model(path)


def test_transfer_errors(tmp_path: Path) -> None:
    enc_only = _pretrain_ckpt(tmp_path / "enc", UNet(width=4), ("encoder.",))
    with pytest.raises(CheckpointError, match="no decoder weights"):
        load_pretrained(UNet(width=4), enc_only, "encoder+decoder")
    with pytest.raises(CheckpointError, match="do not fit this UNet"):
        load_pretrained(UNet(width=8), enc_only)
    nothing = save_checkpoint(
        tmp_path / "none", {"other.w": torch.zeros(2)}, {"task": "pretrain", "method": "x"}
    )
    with pytest.raises(CheckpointError, match="no encoder tensors"):
        load_pretrained(UNet(width=4), nothing)


def test_transfer_all_copies_a_segmentation_model_head_included(tmp_path: Path) -> None:
    src = UNet(width=4)
    save_run_model(tmp_path / "seg", src, {})
    dst = UNet(width=4)
    rep = load_pretrained(dst, tmp_path / "seg", "all")
    assert rep.tensors == len(src.state_dict()) and "head included" in str(rep)
    assert all(
        torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True)
    )
    pre = _pretrain_ckpt(tmp_path / "pre", UNet(width=4))
    with pytest.raises(CheckpointError, match="needs a segmentation model"):
        load_pretrained(UNet(width=4), pre, "all")
