"""angioseg: coronary artery segmentation when labels are scarce.

The package implements, as one library with one CLI:

* CM-UNet style self-supervised pretraining of a UNet and few-label fine-tuning (``angioseg.train``),
* the clinical metrics of the CM-UNet study (``angioseg.metrics``),
* data readers, preprocessing and synthetic angiograms (``angioseg.data``).
"""

__version__ = "0.1.0"

from angioseg.errors import AngiosegError, CheckpointError, DataError

__all__ = ["AngiosegError", "CheckpointError", "DataError", "__version__"]
