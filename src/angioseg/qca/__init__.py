"""Quantitative coronary analysis (QCA) of a vessel mask: MLD, reference diameter, %DS, %AS, lesion length.

Data flows one way: qca uses the readers (``angioseg.data``) and the segmenter (``angioseg.predict``),
and the web app (``angioseg.app``) uses qca; qca never imports the app.
"""

from angioseg.qca.calibration import Calibration, calibrate, catheter_mm
from angioseg.qca.frames import choose_frame
from angioseg.qca.pipeline import QCAOptions, QCAResult, qca_between, qca_branches, run_qca

__all__ = [
    "Calibration",
    "QCAOptions",
    "QCAResult",
    "calibrate",
    "catheter_mm",
    "choose_frame",
    "qca_between",
    "qca_branches",
    "run_qca",
]
