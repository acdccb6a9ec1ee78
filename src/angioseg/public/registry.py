"""The public X-ray coronary (and retinal) datasets that ``angioseg data fetch`` knows.

Every entry says where the data comes from, under which terms, how to cite it and, for each file
to download, the checksum it must have. Where a checksum could not be found in a trustworthy
public source it is ``None`` and the downloader says so and records the digest it computed; it
never pretends to have verified anything.

Sources of the URLs and checksums (looked up when this file was written):

* ARCADE: Zenodo record 10390295 (doi:10.5281/zenodo.10390295), file ``arcade.zip``. The SHA-256
  is the one pinned by the torch-em data loaders (github.com/constantinpape/torch-em,
  ``torch_em/data/datasets/medical/arcade.py``), the only published digest found.
* DCA1: the authors' page at CIMAT (personal.cimat.mx:8181/~ivan.cruz/DB_Angiograms.html), file
  ``DB_Angiograms_134.zip``; SHA-256 pinned by torch-em (``.../medical/dca1.py``). Plain HTTP, so
  the checksum is the only protection against a tampered or truncated file.
* XCAD: the Dropbox link of the authors' repository (github.com/AISIGSJTU/SSVS, README). No
  checksum is published anywhere we could find.
* DRIVE: distributed only after registration (drive.grand-challenge.org); no download here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from angioseg.errors import AngiosegError


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Attributes:
        filename: name it is saved under in the download cache.
        urls: the primary URL first, then mirrors; each is tried in turn.
        sha256: expected SHA-256 (lower-case hex), or ``None`` when no trustworthy digest is known.
        size: expected size in bytes, or ``None`` when unknown (the server's length is used then).
        checksum_source: where ``sha256`` comes from (shown by ``angioseg data list``).
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    checksum_source: str = "no published checksum"


@dataclass(frozen=True)
class DatasetInfo:
    """A public dataset: provenance, terms, files and the converter that reads its archive.

    Attributes:
        name: registry key (``angioseg data fetch NAME``).
        title: one line.
        description: what it contains and what ``fetch`` writes.
        licence: licence or terms of use, as stated by the distributor.
        citation: what to cite.
        homepage: where a human can read about it and download it by hand.
        converter: key of :data:`angioseg.public.convert.CONVERTERS` that reads the extracted archive.
        files: files to download; empty when the data can't be downloaded automatically.
        manual: why it can't be downloaded automatically and how to get it (when ``files`` is empty).
    """

    name: str
    title: str
    description: str
    licence: str
    citation: str
    homepage: str
    converter: str
    files: tuple[RemoteFile, ...] = field(default_factory=tuple)
    manual: str = ""

    @property
    def downloadable(self) -> bool:
        return bool(self.files)


DATASETS: dict[str, DatasetInfo] = {
    "arcade": DatasetInfo(
        name="arcade",
        title="ARCADE: X-ray coronary angiograms with SYNTAX-segment and stenosis polygons (MICCAI 2023)",
        description=(
            "1500 + 1500 512x512 angiograms in two tasks, each split train/val/test = 1000/200/300. "
            "The SYNTAX task's 25 segment polygons become one binary vessel mask per image "
            "(OUT/syntax/SPLIT/images, masks); the stenosis task's polygons become stenosis masks "
            "(OUT/stenosis/SPLIT/images, masks)."
        ),
        licence=(
            "open access on Zenodo; torch-em and a Hugging Face mirror give CC0 1.0, other copies "
            "CC BY 4.0: treat it as CC BY 4.0 and credit the authors"
        ),
        citation=(
            "M. Popov et al., 'Dataset for Automatic Region-based Coronary Artery Disease Diagnostics "
            "Using X-Ray Angiography Images', Scientific Data 11, 20 (2024), "
            "doi:10.1038/s41597-023-02871-z; data: doi:10.5281/zenodo.10390295"
        ),
        homepage="https://zenodo.org/records/10390295",
        converter="arcade",
        files=(
            RemoteFile(
                filename="arcade.zip",
                urls=("https://zenodo.org/records/10390295/files/arcade.zip?download=1",),
                sha256="a396cdea7c92c55dc97bbf3dd8e3df517d76872b289a8bcb45513bdb3350837f",
                checksum_source="torch-em's ARCADE loader (constantinpape/torch-em)",
            ),
        ),
    ),
    "dca1": DatasetInfo(
        name="dca1",
        title="DCA1 (CIMAT): 134 X-ray coronary angiograms with expert vessel masks",
        description=(
            "134 300x300 angiograms N.pgm with vessel masks N_gt.pgm, written as OUT/images/N.png and "
            "OUT/masks/N.png. The literature's split is images 1-100 for training, 101-134 for testing."
        ),
        licence="free for research as offered on the authors' page; cite the paper",
        citation=(
            "F. Cervantes-Sanchez et al., 'Automatic Segmentation of Coronary Arteries in X-ray "
            "Angiograms using Multiscale Analysis and Artificial Neural Networks', Applied Sciences "
            "9(24):5507 (2019), doi:10.3390/app9245507"
        ),
        homepage="http://personal.cimat.mx:8181/~ivan.cruz/DB_Angiograms.html",
        converter="dca1",
        files=(
            RemoteFile(
                filename="DB_Angiograms_134.zip",
                urls=("http://personal.cimat.mx:8181/~ivan.cruz/DB_Angiograms_files/DB_Angiograms_134.zip",),
                sha256="7161638a6e92c6a6e47a747db039292c8a1a6bad809aac0d1fd16a10a6f22a11",
                checksum_source="torch-em's DCA1 loader (constantinpape/torch-em)",
            ),
        ),
    ),
    "xcad": DatasetInfo(
        name="xcad",
        title="XCAD: X-ray coronary angiograms for self-supervised vessel segmentation (ICCV 2021)",
        description=(
            "Unlabeled 512x512 training angiograms, pre-contrast background frames and synthetic "
            "fractal vessel maps, plus a labeled test set. Every folder of images is mirrored into OUT "
            "as PNG; a folder named img/images becomes images/, one named gt/masks becomes masks/ "
            "(binarised), so the labeled test set lands in OUT/test/images + OUT/test/masks."
        ),
        licence="no licence stated by the authors; research use, cite the paper",
        citation=(
            "Y. Ma et al., 'Self-Supervised Vessel Segmentation via Adversarial Learning', "
            "ICCV 2021 (github.com/AISIGSJTU/SSVS)"
        ),
        homepage="https://github.com/AISIGSJTU/SSVS",
        converter="xcad",
        files=(
            RemoteFile(
                filename="XCAD.zip",
                urls=("https://www.dropbox.com/s/z0lk5oz6gt9mgd2/XCAD.zip?dl=1",),
            ),
        ),
    ),
    "drive": DatasetInfo(
        name="drive",
        title="DRIVE: retinal fundus photographs with manual vessel masks and field-of-view masks",
        description=(
            "40 565x584 colour photographs (20 training, 20 test) with manual vessel masks and FOV "
            "masks, written as OUT/{train,test}/images (green channel, or RGB with --channel rgb), "
            "masks/ and fov/ with stems train_NN / test_NN."
        ),
        licence="research use after registration; redistribution not allowed",
        citation=(
            "J. Staal et al., 'Ridge-based vessel segmentation in color images of the retina', "
            "IEEE TMI 23(4):501-509 (2004)"
        ),
        homepage="https://drive.grand-challenge.org",
        converter="drive",
        manual=(
            "DRIVE is distributed only to registered users of drive.grand-challenge.org and may not "
            "be redistributed, so it has no public download URL"
        ),
    ),
}


def get_dataset(name: str) -> DatasetInfo:
    """Look a dataset up by name (case-insensitive).

    Raises:
        AngiosegError: unknown name; the message lists the known ones.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise AngiosegError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]
