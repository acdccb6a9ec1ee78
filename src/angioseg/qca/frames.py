"""Which frame of a cine run to analyse (``--frame auto``).

QCA is read on an end-diastolic frame with the vessel fully opacified: the coronary tree is then
longest and widest, so its projected, opacified area is largest. The rule:

* with vessel masks (a model segments every frame): the frame with the largest vessel area;
* without masks: the frame with the largest *vessel signal*, the sum over the image of the black
  top-hat (grey closing minus image, square footprint of ``2 * max(8, side // 25) + 1`` px, after
  a 1 px Gaussian): dark structures narrower than the footprint, i.e. opacified vessels, weighted
  by their contrast. Catheter and bones are in every frame and change little.

On the synthetic cines of :func:`angioseg.qca.phantom.phantom_cine` neighbouring frames around
end diastole differ by about 0.5 % in vessel signal, so the choice is within a frame of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from angioseg.errors import AngiosegError


def vessel_signal(image: np.ndarray) -> float:
    """Summed black top-hat of an image (see the module docstring)."""
    img = ndimage.gaussian_filter(np.asarray(image, np.float32), 1.0)
    r = max(8, min(img.shape) // 25)
    closed = ndimage.grey_closing(img, size=(2 * r + 1, 2 * r + 1))
    return float((closed - img).sum())


def choose_frame(
    images: Sequence[np.ndarray] | None = None, masks: Sequence[np.ndarray] | None = None
) -> tuple[int, str, list[float]]:
    """(index, rule, score per frame) of the frame to analyse; masks win over images when given."""
    if masks is not None and len(masks):
        scores = [float(np.count_nonzero(m)) for m in masks]
        rule = "largest segmented vessel area"
    elif images is not None and len(images):
        scores = [vessel_signal(im) for im in images]
        rule = "largest vessel signal (summed black top-hat)"
    else:
        raise AngiosegError("no frame to choose from")
    index = int(np.argmax(scores))
    return index, rule, scores
