"""Write small synthetic DICOM files (single- and multi-frame X-ray angiography) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom(
    path: Path,
    frames: np.ndarray,
    spacing: tuple[float, float] | None = (0.3, 0.3),
    imager_spacing: bool = False,
    photometric: str = "MONOCHROME2",
    **attributes: object,
) -> Path:
    """``frames``: H x W or N x H x W uint8/uint16 array -> an XA DICOM file at ``path``.

    ``attributes`` are further DICOM keywords to set, e.g. ``DistanceSourceToDetector=1000``.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.asarray(frames)
    multi = frames.ndim == 3
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "XA"
    ds.PatientName = "Test^Phantom"
    ds.Rows, ds.Columns = frames.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 8 if frames.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if multi:
        ds.NumberOfFrames = frames.shape[0]
    if spacing is not None:
        if imager_spacing:
            ds.ImagerPixelSpacing = [str(s) for s in spacing]
        else:
            ds.PixelSpacing = [str(s) for s in spacing]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path
