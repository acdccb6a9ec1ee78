"""Contract tests over the whole pretraining registry, plus method-specific exact checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from angioseg.pretrain import METHOD_NAMES, METHODS, method_class
from angioseg.pretrain.base import PretrainMethod

SIZE = 64


def make(name: str, **options: Any) -> PretrainMethod:
    torch.manual_seed(0)
    return METHODS[name]({"width": 4}, image_size=SIZE, **options)


def batch_of(method: PretrainMethod, n: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    images = torch.randn(n, 1, SIZE, SIZE)
    views = [method.view_transform(im) for im in images]
    batch = {k: torch.stack([v[k] for v in views]) for k in views[0]}
    return {**batch, "index": torch.arange(n)}  # as ViewDataset adds it


def test_registry_names() -> None:
    assert tuple(METHODS) == METHOD_NAMES == ("cmunet", "mae", "genesis", "spark", "moco")
    assert all(cls.name == name for name, cls in METHODS.items())
    with pytest.raises(ValueError, match="expected one of cmunet"):
        method_class("simclr")


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_one_step_gradients_everywhere_no_nan(name: str) -> None:
    method = make(name)
    out = method(batch_of(method))
    assert set(out) >= {"loss"} and all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for pname, p in method.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: {pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        else:
            assert p.grad is None


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_loss_decreases_on_a_fixed_batch(name: str) -> None:
    method = make(name)
    batch = batch_of(method)
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=2e-3)
    queue = getattr(method, "queue", None)
    if queue is not None:  # MoCo: negatives from other images (an empty queue has none: zero loss)
        method.enqueue(
            torch.nn.functional.normalize(torch.randn(queue.shape), dim=1), torch.full((len(queue),), 99)
        )
    saved = None if queue is None else (queue.clone(), method.queue_ptr.clone())
    losses = []
    for step in range(4):
        torch.manual_seed(123)  # the same masks every step: a fixed objective
        loss = method(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step / 4)
        if saved is not None:  # MoCo: keep the negatives fixed (the batch's own keys would pile up)
            method.queue.copy_(saved[0])
            method.queue_ptr.copy_(saved[1])
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"{name}: {losses}"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_export_has_unet_keys_and_options_rebuild(name: str) -> None:
    method = make(name)
    keys = set(method.export_state())
    assert any(k.startswith("encoder.") for k in keys)
    has_decoder = any(k.startswith("decoder.") for k in keys)
    assert has_decoder == (name != "moco")
    allowed = ("encoder.", "decoder.", "head.", "mask_tokens.")
    assert all(k.startswith(allowed) for k in keys)
    rebuilt = METHODS[name](method.model_config, image_size=SIZE, **method.options())
    assert rebuilt.options() == method.options()
    rebuilt.load_export(method.export_state())
    for k, v in rebuilt.export_state().items():
        assert torch.equal(v, method.export_state()[k])


def test_masked_input_pixels_are_zero_and_masks_differ_per_image() -> None:
    mae = make("mae")
    x = torch.ones(3, 1, SIZE, SIZE)
    torch.manual_seed(0)
    rec = mae.reconstruct(x)
    zeros = (rec.corrupted == 0).flatten(1).sum(1)
    assert zeros.tolist() == [8 * 256] * 3  # 8 of 16 patches of 16 x 16 px
    assert not torch.equal(rec.corrupted[0], rec.corrupted[1])


def test_cmunet_views_and_mask_ratio() -> None:
    m = METHODS["cmunet"]({"width": 4}, image_size=256)
    assert (m.crop, m.max_shift) == (224, 31)
    views = m.view_transform(torch.randn(1, 256, 256))
    assert views["online"].shape == views["target"].shape == (1, 224, 224)
    masked = m.mask(torch.zeros(2, 1, 224, 224))
    assert masked.flatten(1).sum(1).tolist() == [127 * 256, 127 * 256]


def test_cmunet_contrastive_term_is_info_nce_of_its_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """loss_ct is 2 tau * CE of the cosine logits / 0.07 (numpy, by hand) of the embeddings it contrasts."""
    from angioseg.pretrain import cmunet, losses

    seen: list[tuple[np.ndarray, np.ndarray, float, int]] = []

    def spy(q: torch.Tensor, k: torch.Tensor, tau: float = 0.07, scale: Any = None, offset: int = 0) -> Any:
        assert scale is None and q.requires_grad and not k.requires_grad  # no gradient to the target
        seen.append((q.detach().double().numpy(), k.double().numpy(), tau, offset))
        return losses.info_nce(q, k, tau, scale, offset)

    monkeypatch.setattr(cmunet, "info_nce", spy)
    method = make("cmunet")
    out = method(batch_of(method))
    assert len(seen) == 1
    q, k, tau, offset = seen[0]
    assert tau == 0.07 and offset == 0 and q.shape == k.shape and q.shape[0] == 4
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = qn @ kn.T / 0.07
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    expected = 2 * 0.07 * -np.mean(np.diag(log_softmax))  # positive of query i: key i
    assert out["loss_ct"].item() == pytest.approx(expected, rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["loss_ct"].item() + out["loss_rc"].item(), rel=1e-5)


def test_cmunet_ema_follows_the_formula() -> None:
    method = make("cmunet")
    before = [p.clone() for p in method.target_encoder.parameters()]
    with torch.no_grad():
        for p in method.backbone.encoder.parameters():
            p.add_(0.5)
    method.after_step(0.5)
    for t, b, s in zip(
        method.target_encoder.parameters(), before, method.backbone.encoder.parameters(), strict=True
    ):
        assert torch.allclose(t, 0.996 * b + 0.004 * s, atol=1e-7)


def test_moco_queue_fifo() -> None:
    method = METHODS["moco"]({"width": 4}, image_size=SIZE, queue_size=5, dim=2)
    keys = torch.arange(14, dtype=torch.float32).reshape(7, 2)
    method.enqueue(keys[:2])
    method.enqueue(keys[2:4])
    assert int(method.queue_ptr) == 4 and torch.equal(method.queue[:4], keys[:4])
    method.enqueue(keys[4:7])  # wraps: rows 4, 0, 1 replaced by keys 4, 5, 6 (the oldest go first)
    assert int(method.queue_ptr) == 2
    assert torch.equal(method.queue, torch.stack([keys[5], keys[6], keys[2], keys[3], keys[4]]))
    method.enqueue(torch.ones(9, 2), torch.arange(9))
    assert torch.equal(method.queue, torch.ones(5, 2)) and int(method.queue_ptr) == 0
    assert method.queue_ids.tolist() == [4, 5, 6, 7, 8]
    # MoCo v2's queue, whatever the dataset size (it was once clamped to the number of images).
    assert METHODS["moco"].resolve_options({}, num_images=40) == {}
    assert METHODS["moco"]({"width": 4}, image_size=SIZE).queue_size == 65536


def test_moco_loss_leaves_out_empty_slots_and_the_images_own_stale_keys() -> None:
    """The loss equals InfoNCE computed by hand over the negatives that remain."""
    method = METHODS["moco"]({"width": 4}, image_size=SIZE, queue_size=6, dim=8, tau=0.2)
    batch = batch_of(method, n=2)  # images 0 and 1
    torch.manual_seed(5)
    stored = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    method.enqueue(stored, torch.tensor([0, 1, 7, 0]))  # slots 4, 5 stay empty
    assert method.negatives_mask(batch["index"], 2).tolist() == [
        [True, False, False, True, True, True],
        [False, True, False, False, True, True],
    ]
    q = method.embed(method.encoder, method.head, batch["query"]).detach()
    k = method.embed(method.key_encoder, method.key_head, batch["key"])
    loss = method(batch)["loss"].item()
    expected = 0.0
    for i, allowed in enumerate(([1, 2], [0, 2, 3])):
        pos = float(q[i] @ k[i]) / 0.2
        negs = [float(q[i] @ stored[j]) / 0.2 for j in allowed]
        denom = sum(math.exp(v) for v in [pos, *negs])
        expected += -math.log(math.exp(pos) / denom) / 2
    assert loss == pytest.approx(expected, rel=1e-4)
    # The batch's keys were queued with their image indices.
    assert method.queue_ids.tolist() == [0, 1, 7, 0, 0, 1]


def test_spark_sparse_encoder_keeps_masked_cells_at_zero() -> None:
    from angioseg.pretrain.masking import upsample_mask
    from angioseg.pretrain.spark import sparse_encode

    method = make("spark")
    x = torch.randn(2, 1, SIZE, SIZE)
    active = method.active_mask(x)
    assert (~active).flatten(1).sum(1).tolist() == [10, 10]  # 16 cells, keep round(16 * 0.4) = 6
    feats = sparse_encode(method.backbone.encoder, x * upsample_mask(active, 16), active)
    for i, f in enumerate(feats):
        hidden = ~upsample_mask(active, 16 >> i).expand_as(f)
        assert f[hidden].abs().max() == 0
    assert feats[-1][upsample_mask(active, 1).expand_as(feats[-1])].abs().sum() > 0


def test_spark_batchnorm_uses_visible_positions_only() -> None:
    from angioseg.pretrain.spark import sparse_batch_norm

    bn = torch.nn.BatchNorm2d(1, momentum=1.0)
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = 1.0, 3.0
    active = torch.tensor([[[[True, False], [False, True]]]])
    y = sparse_batch_norm(bn, x, active)
    assert bn.running_mean.item() == pytest.approx(2.0)  # mean of 1 and 3, the zeros ignored
    assert y[0, 0, 0, 1] == 0 and y[0, 0, 0, 0].item() == pytest.approx(-1.0, abs=1e-4)


def test_cmunet_adapter_follows_the_contrastive_encoder_and_is_fixed() -> None:
    """Paper: contrastive encoder -> adapter (Conv2D, shape compatibility); no gradient on that branch."""
    method = make("cmunet")
    batch = batch_of(method, n=2)
    width = 4
    assert tuple(method.adapter.shape) == (width, 16 * width)
    assert "adapter" not in dict(method.named_parameters())  # never optimised ...
    assert "adapter" in method.state_dict()  # ... but kept in the checkpoint
    method.eval()
    bottleneck = method.target_encoder(batch["target"])[-1].float()
    expected = method.target_projector(
        torch.einsum("oc,bchw->bo", method.adapter, bottleneck) / bottleneck[0, 0].numel()
    )
    got = method.target_embedding(batch["target"])
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(method.target_embedding(batch["target"]), got)  # the same map every call
    online = method.online_embedding(method.backbone.encoder(batch["online"]))
    method.adapter.mul_(2.0)
    assert not torch.allclose(method.target_embedding(batch["target"]), got)
    assert torch.allclose(method.online_embedding(method.backbone.encoder(batch["online"])), online)


def test_parameter_counts_at_width_64() -> None:
    # Paper (Table I): UNet 31.04 M, SparK 34.18 M, MoCo 37.70 M (query + key encoders), CM-UNet 121.49 M
    # (online networks, with a 77.07 M projector layer from flattening 224 x 224). Ours differ where
    # explained in docs/pretraining.md.
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        counts = {n: METHODS[n]({"width": 64}, image_size=256).parameter_counts() for n in METHOD_NAMES}
    assert counts["mae"]["trainable"] == counts["genesis"]["trainable"] == 31_042_369
    assert counts["spark"]["trainable"] == 31_042_369 + (64 + 128 + 256 + 512 + 1024)
    assert (
        counts["moco"]["momentum"]
        == counts["moco"]["trainable"]
        == 18_849_984 + 1024 * 1024 + 1024 + 1024 * 128 + 128
    )
    # Projector 64 -> 1536 (+BN) -> 256 on the feature decoder's width; the adapter is a fixed buffer.
    projector = 64 * 1536 + 1536 + 2 * 1536 + 1536 * 256
    assert counts["cmunet"]["momentum"] == 18_849_984 + projector
    assert counts["cmunet"]["trainable"] == 44_521_857


def test_real_unlabeled_angiograms_load_and_train_one_step() -> None:
    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.pretrain.data import load_unlabeled

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "arcade_unlabeled"  # as conftest
    if not root.exists():
        pytest.skip(f"real data not available: {root}")
    data = load_unlabeled(root, PreprocessConfig(image_size=SIZE), limit=4)
    assert data.images.shape == (4, SIZE, SIZE) and not data.failed
    assert abs(float(data.images.mean())) < 0.5  # per-image z-score before the resize
    method = make("spark")
    views = [method.view_transform(torch.from_numpy(im[None])) for im in data.images]
    out = method({"image": torch.stack([v["image"] for v in views])})
    assert torch.isfinite(out["loss"])
