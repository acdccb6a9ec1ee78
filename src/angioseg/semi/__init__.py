"""Semi-supervised fine-tuning: labeled images plus unlabeled angiograms, on the same Lightning engine.

``SEMI_METHODS`` maps a name (``finetune --semi NAME``) to a :class:`SegmentationModule` subclass
whose ``training_step`` receives, besides the labeled ``image``/``mask`` batch, an unlabeled batch
``u_weak``/``u_strong`` (two views of the same unlabeled frames, see
:class:`angioseg.semi.data.UnlabeledViews`).
"""

from __future__ import annotations

from angioseg.semi.meanteacher import MeanTeacherModule

SEMI_METHODS: dict[str, type[MeanTeacherModule]] = {"meanteacher": MeanTeacherModule}
SEMI_NAMES = tuple(SEMI_METHODS)
