"""Semi-supervised fine-tuning: labeled images plus unlabeled angiograms, on the same Lightning engine.

``SEMI_METHODS`` maps a name (``finetune --semi NAME``) to a :class:`SegmentationModule` subclass
whose ``training_step`` receives, besides the labeled ``image``/``mask`` batch, an unlabeled batch
``u_weak``/``u_strong`` (two views of the same unlabeled frames, see
:class:`angioseg.semi.data.UnlabeledViews`). ``selftrain`` (:mod:`angioseg.semi.selftrain`) is two
ordinary fine-tunings instead: the first labels the unlabeled frames for the second.
"""

from __future__ import annotations

from angioseg.semi.meanteacher import MeanTeacherModule

SEMI_METHODS: dict[str, type[MeanTeacherModule]] = {"meanteacher": MeanTeacherModule}
# selftrain is not a module of its own: two ordinary fine-tunings (angioseg.semi.selftrain)
SEMI_NAMES = (*SEMI_METHODS, "selftrain")
