"""The centerline input channel (the seed's "attention" channel), stacked after the CT channel.

Two kinds (``seed_repositories_notes.md`` §2.4):

* ``binary``: 1 at centerline voxels, 0 elsewhere. This is what the seed's code does (a point map
  of the rounded graph nodes of the slice).
* ``bright``: the CT intensities with the centerline voxels brightened by ``gain`` (in normalised
  units; 2.0 is about +1040 HU with the seed's global z-score). This is what the seed's README
  describes ("pixels belonging to the centerline mask are artificially enhanced").

The seed drew only the graph nodes, so the map was sparse dots; :func:`angioseg.cta.centerlines.rasterise`
joins consecutive points by default (``dense=True``). The seed computed but dropped the channel in
3D crop mode while its UNet3D expected 2 inputs (a crash); here both 2D and 3D stack it.
"""

from __future__ import annotations

import numpy as np

from angioseg.errors import AngiosegError

KINDS = ("none", "binary", "bright")


def centerline_channel(
    image: np.ndarray, centerline_mask: np.ndarray, kind: str, gain: float = 2.0
) -> np.ndarray:
    """The extra channel for a normalised ``image`` and a same-shape boolean ``centerline_mask``."""
    if kind == "binary":
        return np.asarray(centerline_mask, np.float32)
    if kind == "bright":
        return (np.asarray(image, np.float32) + gain * np.asarray(centerline_mask, np.float32)).astype(
            np.float32
        )
    raise AngiosegError(f"centerline channel must be 'binary' or 'bright', got {kind!r}")


def empty_channel(image: np.ndarray, kind: str) -> np.ndarray:
    """The channel when no centerline is known (first inference pass, prior dropout in training)."""
    return centerline_channel(image, np.zeros(image.shape, bool), kind)


def stack_input(image: np.ndarray, channel: np.ndarray | None) -> np.ndarray:
    """``C x spatial`` float32 network input: the image, then the centerline channel if any."""
    parts = [np.asarray(image, np.float32)]
    if channel is not None:
        parts.append(np.asarray(channel, np.float32))
    return np.stack(parts)
