"""CUTS training objective: ``λ · contrastive(τ) + (1 − λ) · patch-reconstruction MSE``.

Two published settings (:data:`SETTINGS`):

* ``cuts2022`` (arXiv:2209.11359, the "UnsupervisedMedicalSeg" code): λ = 0.01, τ = 0.5;
* ``cuts2024`` (MICCAI 2024 code): λ = 0.001, τ = 0.1.

Two contrastive forms (:data:`CONTRASTIVE`):

* ``ntxent`` (default, the 2024 code and the issue): standard NT-Xent (Chen et al., SimCLR 2020)
  over the ``2S`` embeddings ``[anchors; positives]`` of each image, each row's positive being its
  pair and its negatives all other ``2S − 2`` embeddings; mean over rows, then over images;
* ``ratio`` (the 2022 code, kept to reproduce it): per image
  ``−log(Σ_i exp(s_ii/τ) / Σ_{i≠j} exp(s_ij/τ))`` with ``s = cos(anchor_i, positive_j)``.

NT-Xent is written here (about 10 lines) because lightly's loss needs torchvision, which cannot be
installed beside the pinned torch (see the stack notes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CONTRASTIVE = ("ntxent", "ratio")


@dataclass(frozen=True)
class LossSetting:
    lam: float
    tau: float


SETTINGS = {"cuts2022": LossSetting(lam=0.01, tau=0.5), "cuts2024": LossSetting(lam=0.001, tau=0.1)}


def nt_xent(anchors: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent of ``B x S x D`` anchor and positive embeddings (pairs share the index), averaged over B.

    Per image, ``z = normalise([a; p])`` (2S x D), ``sim = z zᵀ / τ`` with the diagonal excluded, and
    row ``k`` is a cross-entropy whose target is ``k + S`` (or ``k − S``).
    """
    b, s, _ = anchors.shape
    z = F.normalize(torch.cat([anchors, positives], 1).float(), dim=-1)  # B x 2S x D
    sim = z @ z.transpose(1, 2) / tau
    eye = torch.eye(2 * s, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    target = torch.cat([torch.arange(s, 2 * s), torch.arange(0, s)]).to(z.device)
    return F.cross_entropy(sim.reshape(b * 2 * s, 2 * s), target.repeat(b))


def ratio_loss(anchors: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """The CUTS-2022 contrastive term: one ratio of sums per image, averaged over the batch."""
    za = F.normalize(anchors.float(), dim=-1)
    zp = F.normalize(positives.float(), dim=-1)
    sim = za @ zp.transpose(1, 2) / tau  # B x S x S
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    pos = torch.logsumexp(sim.masked_fill(~eye, float("-inf")).flatten(1), 1)
    neg = torch.logsumexp(sim.masked_fill(eye, float("-inf")).flatten(1), 1)
    return (neg - pos).mean()


def contrastive_loss(
    anchors: torch.Tensor, positives: torch.Tensor, tau: float, form: str = "ntxent"
) -> torch.Tensor:
    if form == "ntxent":
        return nt_xent(anchors, positives, tau)
    if form == "ratio":
        return ratio_loss(anchors, positives, tau)
    raise ValueError(f"contrastive form must be one of {CONTRASTIVE}, got {form!r}")


def cuts_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    recon: torch.Tensor,
    patches: torch.Tensor,
    lam: float,
    tau: float,
    form: str = "ntxent",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, contrastive, reconstruction)`` with total = λ·contrastive + (1 − λ)·MSE(recon, patches)."""
    con = contrastive_loss(anchors, positives, tau, form)
    rec = F.mse_loss(recon.float(), patches.float())
    return lam * con + (1 - lam) * rec, con, rec
