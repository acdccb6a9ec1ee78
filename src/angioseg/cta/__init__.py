"""Coronary CT angiography: 3D volumes, centerline priors (ROI crops, a centerline channel), 2D/3D UNets.

Follows the CoronarySegmentation seed (ASOCA CCTA; see ``docs/cta.md``) with its bugs fixed and
one leak closed: at inference the centerline comes from the model's own coarse prediction, never
from the ground truth.

Data flows one way: ``volume_io`` (read/write NRRD, NIfTI, MHA, DICOM series) -> ``intensity`` ->
``centerlines`` (files, 3D skeletons) -> ``sampling`` (DBSCAN/k-means ROI crops, grid, the
centerline channel) -> ``module`` (Lightning, focal + Dice in ``losses``) -> ``infer``
(sliding window, post-processing) -> ``metrics3d``. ``pipeline`` holds the library functions behind
``angioseg cta synth|train|segment|evaluate``; ``phantom`` renders CT-like test volumes.

Array convention everywhere: a volume is a ``D x H x W`` array indexed ``[z, y, x]`` (SimpleITK's
``GetArrayFromImage`` order) and its ``spacing`` is ``(sz, sy, sx)`` in mm; points are ``N x 3``
in the same ``(z, y, x)`` voxel order unless a function says otherwise.
"""
