"""Small synthetic CT scans with spheres at known world positions, written as DICOM / NIfTI / MetaImage.

Used by the tests of :mod:`aift_tf.importers.volumes` and by the worked example in ``data/README.md``:

    python -m simulate.scan_phantom demo-scans            # writes demo-scans/images/ and candidates.csv
    aift-data import-volumes demo-scans/images --candidates demo-scans/candidates.csv \\
        --out demo.h5 --patch-size 24 --patches 4 --window -1000,500

A phantom is a block of soft tissue (40 HU) with bright (contrast, +400 HU) and dark (air, -900 HU)
spheres with a 1 mm soft edge, on an anisotropic grid with a non-zero origin and an in-plane rotated
orientation, so that world <-> voxel conversions are actually exercised. Values are whole HU, so a
DICOM series (stored = (HU - intercept) / slope) reproduces them exactly. DICOM files get random
names and are written in shuffled order; ImagePositionPatient is non-trivial.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BACKGROUND_HU = 40.0


@dataclass
class Phantom:
    """Geometry (ITK order i, j, k = x, y, z) and spheres (centre LPS mm, radius mm, HU)."""

    size: tuple = (40, 36, 20)
    spacing: tuple = (0.8, 0.9, 2.0)
    origin: tuple = (-101.5, 37.25, -212.0)
    angle_deg: float = 12.0          # in-plane rotation of the row / column directions about z
    spheres: list = field(default_factory=list)
    background_hu: float = BACKGROUND_HU

    @property
    def direction(self) -> np.ndarray:
        a = np.deg2rad(self.angle_deg)
        row = np.array([np.cos(a), np.sin(a), 0.0])
        col = np.array([-np.sin(a), np.cos(a), 0.0])
        return np.stack([row, col, np.cross(row, col)], axis=1)  # columns = index axes

    def world(self, index) -> np.ndarray:
        u = np.asarray(index, np.float64).reshape(-1, 3)
        return np.asarray(self.origin) + (self.direction @ (u * np.asarray(self.spacing)).T).T

    def centre(self, frac=(0.5, 0.5, 0.5)) -> np.ndarray:
        """World point at a fraction of the index range (0.5 = the middle)."""
        return self.world([(s - 1) * f for s, f in zip(self.size, frac)])[0]


def example_phantom(seed: int = 0) -> Phantom:
    """A phantom with one bright and one dark sphere (radius 4 mm) at seeded positions."""
    rng = np.random.default_rng(seed)
    ph = Phantom()
    for hu, frac in ((400.0, (0.3, 0.35, 0.35)), (-900.0, (0.7, 0.65, 0.65))):
        jitter = rng.uniform(-0.05, 0.05, 3)
        ph.spheres.append({"centre": ph.centre(np.add(frac, jitter)).tolist(), "radius": 4.0, "hu": hu})
    return ph


def render(ph: Phantom) -> np.ndarray:
    """The phantom's whole-HU values as float32 ``(k, j, i)`` (SimpleITK's array order)."""
    i, j, k = np.meshgrid(*(np.arange(s) for s in ph.size), indexing="ij")
    pts = ph.world(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    hu = np.full(len(pts), ph.background_hu)
    for s in ph.spheres:
        d = np.linalg.norm(pts - np.asarray(s["centre"]), axis=1)
        w = np.clip(s["radius"] - d + 0.5, 0.0, 1.0)  # 1 mm soft edge
        hu = hu + (s["hu"] - hu) * w
    hu = np.rint(hu).reshape(ph.size).transpose(2, 1, 0)
    return np.ascontiguousarray(hu, dtype=np.float32)


def to_image(ph: Phantom, hu=None):
    """The phantom as a SimpleITK image (float32 HU) with its geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(render(ph) if hu is None else hu)
    img.SetSpacing([float(v) for v in ph.spacing])
    img.SetOrigin([float(v) for v in ph.origin])
    img.SetDirection([float(v) for v in ph.direction.ravel()])
    return img


def write_image(ph: Phantom, path) -> Path:
    """Write the phantom as a NIfTI (``.nii``/``.nii.gz``) or MetaImage (``.mhd`` + ``.raw``) file (int16 HU)."""
    import SimpleITK as sitk

    path = Path(path)
    sitk.WriteImage(sitk.Cast(to_image(ph), sitk.sitkInt16), str(path))
    return path


def write_dicom_series(ph: Phantom, folder, *, slope: float = 0.5, intercept: float = -1024.0, seed: int = 0,
                       series_uid: str | None = None, hu=None) -> Path:
    """Write the phantom as a CT DICOM series (one file per slice, random names, shuffled order).

    Stored values are uint16 ``(HU - intercept) / slope`` with RescaleSlope/RescaleIntercept set.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hu = render(ph) if hu is None else hu
    stored = np.rint((hu - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("HU range does not fit uint16 with this slope / intercept")
    stored = stored.astype(np.uint16)
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid(entropy_srcs=[f"series-{seed}"])
    study_uid = generate_uid(entropy_srcs=[f"study-{seed}"])
    frame_uid = generate_uid(entropy_srcs=[f"frame-{seed}"])
    d = ph.direction
    nz = ph.size[2]
    for k in rng.permutation(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid(entropy_srcs=[f"{series_uid}-{k}"])
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = "Phantom^Scan"
        ds.PatientID = f"phantom{seed}"
        ds.Modality = "CT"
        ds.InstanceNumber = int(k) + 1
        ipp = np.asarray(ph.origin) + d[:, 2] * ph.spacing[2] * int(k)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.r_[d[:, 0], d[:, 1]]]
        ds.PixelSpacing = [f"{ph.spacing[1]:g}", f"{ph.spacing[0]:g}"]  # row spacing (j), column spacing (i)
        ds.SliceThickness = f"{ph.spacing[2]:g}"
        ds.Rows, ds.Columns = int(ph.size[1]), int(ph.size[0])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:g}", f"{intercept:g}", "HU"
        ds.PixelData = stored[int(k)].tobytes()
        name = "".join(rng.choice(list("0123456789abcdef"), 12))
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
    return folder


def write_example(out, seed: int = 0) -> dict:
    """Three phantom scans (a DICOM series, a NIfTI and a MetaImage file) and a LUNA16-style candidate list.

    Candidates: each sphere centre (bright = class 1, dark = class 0) and one point in plain
    tissue (class 0) per scan. Returns ``{"images": folder, "candidates": csv path, "phantoms": {id: Phantom}}``.
    """
    out = Path(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    phantoms = {f"ct0{i + 1}": example_phantom(seed + i) for i in range(3)}
    write_dicom_series(phantoms["ct01"], images / "ct01", seed=seed)
    write_image(phantoms["ct02"], images / "ct02.nii.gz")
    write_image(phantoms["ct03"], images / "ct03.mhd")
    rows = []
    for vid, ph in phantoms.items():
        for s in ph.spheres:
            rows.append([vid, *(round(v, 3) for v in s["centre"]), int(s["hu"] > 0)])
        rows.append([vid, *(round(v, 3) for v in ph.centre((0.5, 0.85, 0.5))), 0])
    cand = out / "candidates.csv"
    with open(cand, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "class"])
        w.writerows(rows)
    return {"images": images, "candidates": cand, "phantoms": phantoms}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write three small synthetic CT scans and a candidate list.")
    ap.add_argument("out", help="folder to write (images/ and candidates.csv)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    r = write_example(a.out, a.seed)
    print(f"wrote {r['images']} (ct01: DICOM series, ct02.nii.gz, ct03.mhd) and {r['candidates']}")


if __name__ == "__main__":
    main()
