"""Fine-tuning augmentations of the CM-UNet paper, built from MONAI transforms.

The authors' albumentations pipeline (``Finetuning/dataset.py``), mapped one to one:

=====================================================  ==============================================
paper / authors' code                                   here
=====================================================  ==============================================
GaussNoise(var 10–50) @ 0.1                             RandGaussianNoise(std ≤ ``noise_std``) @ 0.1
GaussianBlur(k 5–11, σ 0.5–1) @ 0.2                     RandGaussianSmooth(σ 0.5–1) @ 0.2
RandomBrightnessContrast(0.25) @ 0.15                   RandShiftIntensity(±0.25) + RandScaleIntensity(±0.25) @ 0.15
Downscale(0.5–1) @ 0.25                                 RandSimulateLowResolution(zoom 0.5–1) @ 0.25
OneOf{HFlip, VFlip, RandomRotate90, GaussNoise} @ 0.75  OneOf{identity (w 0.25), flip H, flip V, rot90, noise}
=====================================================  ==============================================

One deliberate change: the authors' noise variance of 10–50 is in the units of z-scored images
(a standard deviation of 3–7 times the image's own), which buries the vessels; we use a standard
deviation of at most ``noise_std`` (default 0.3) z-units. Spatial transforms move image and mask together.

:func:`strong_augmentations` (``finetune --augment-policy strong``) adds what the paper's set lacks
for a handful of labeled images: a random rotation by any angle with a random scale (0.8-1.25 per
axis), mirrored at the border so no blank corners appear, and a random gamma (0.7-1.5); the mask is
resampled bilinearly and thresholded at 0.5 by the dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.transforms import (
    Compose,
    Identityd,
    OneOf,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
)

AUGMENT_POLICIES = ("paper", "strong")


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`AUGMENT_POLICIES`, else an error naming them."""
    if policy not in AUGMENT_POLICIES:
        from angioseg.errors import AngiosegError

        raise AngiosegError(f"--augment-policy {policy!r} is not one of: {', '.join(AUGMENT_POLICIES)}")
    return policy


def augmentations(policy: str, noise_std: float = 0.3, keys: tuple[str, str] = ("image", "mask")) -> Compose:
    """The training augmentations of ``policy`` (one of :data:`AUGMENT_POLICIES`)."""
    if check_policy(policy) == "strong":
        return strong_augmentations(noise_std, keys)
    return paper_augmentations(noise_std, keys)


def strong_augmentations(noise_std: float = 0.3, keys: tuple[str, str] = ("image", "mask")) -> Compose:
    """The paper's augmentations after a random rotation + scale (p 0.7) and before a random gamma (p 0.3)."""
    img, msk = keys
    both = [img, msk]
    affine = RandAffined(
        both,
        prob=0.7,
        rotate_range=(np.pi,),
        scale_range=((-0.2, 0.25), (-0.2, 0.25)),
        mode=("bilinear", "bilinear"),
        padding_mode="reflection",
    )
    gamma = RandAdjustContrastd(img, prob=0.3, gamma=(0.7, 1.5))
    return Compose([affine, *paper_augmentations(noise_std, keys).transforms, gamma])


def paper_augmentations(noise_std: float = 0.3, keys: tuple[str, str] = ("image", "mask")) -> Compose:
    """MONAI ``Compose`` over a dict with C x H x W ``image`` and ``mask`` tensors."""
    img, msk = keys
    both = [img, msk]
    transforms: list[Any] = [
        RandGaussianNoised(img, prob=0.1, std=noise_std),
        RandGaussianSmoothd(img, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), prob=0.2),
        RandShiftIntensityd(img, offsets=0.25, prob=0.15),
        RandScaleIntensityd(img, factors=0.25, prob=0.15),
        RandSimulateLowResolutiond(img, prob=0.25, zoom_range=(0.5, 1.0), upsample_mode="bilinear"),
        OneOf(
            [
                Identityd(both),
                RandFlipd(both, prob=1.0, spatial_axis=1),
                RandFlipd(both, prob=1.0, spatial_axis=0),
                RandRotate90d(both, prob=1.0, max_k=3),
                RandGaussianNoised(img, prob=1.0, std=noise_std),
            ],
            weights=[0.25, 0.1875, 0.1875, 0.1875, 0.1875],
        ),
    ]
    return Compose(transforms)
