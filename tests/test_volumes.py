"""3-D scans -> 2.5-D candidate stores: windows, the cutter, SimpleITK/pydicom reading, import-volumes.

The scans are written by the tests themselves (simulate.scan_phantom): a DICOM series with random file
names in shuffled order, non-trivial ImagePositionPatient, an in-plane rotated ImageOrientationPatient
and RescaleSlope 0.5 / RescaleIntercept -1024; the same physical volume as NIfTI and MetaImage
(anisotropic spacing 0.8 x 0.9 x 2.0 mm, non-zero origin); spheres at known world coordinates.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")

from aift_tf.errors import AiftError  # noqa: E402
from aift_tf.importers import import_csv, import_folder, import_volumes, read_volume  # noqa: E402
from aift_tf.store import open_store  # noqa: E402
from aift_tf.volumes import (  # noqa: E402
    WINDOW_PRESETS, apply_window, augmentation_params, extract_patches, parse_window, resample_isotropic,
)
from simulate import scan_phantom as SP  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = 16          # patch side (px); fov = S mm at 1 mm spacing
WINDOW = "-1000,500"
BG = 40.0


def _phantom():
    ph = SP.Phantom()
    ph.spheres = [{"centre": ph.centre((0.5, 0.5, 0.3)).tolist(), "radius": 4.0, "hu": 400.0},
                  {"centre": ph.centre((0.5, 0.5, 0.72)).tolist(), "radius": 4.0, "hu": -900.0}]
    return ph


def _write_csv(path, rows, header=("seriesuid", "coordX", "coordY", "coordZ", "class")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """The same phantom as a DICOM series (dcm), NIfTI (nii) and MetaImage (mhd); candidates at both spheres."""
    root = tmp_path_factory.mktemp("scans")
    images = root / "images"
    images.mkdir()
    ph = _phantom()
    SP.write_dicom_series(ph, images / "dcm", seed=1)
    SP.write_image(ph, images / "nii.nii.gz")
    SP.write_image(ph, images / "mhd.mhd")
    rows = []
    for vid in ("dcm", "nii", "mhd"):
        rows.append([vid, *ph.spheres[0]["centre"], 1])
        rows.append([vid, *ph.spheres[1]["centre"], 0])
    cand = _write_csv(root / "candidates.csv", rows)
    return {"root": root, "images": images, "candidates": cand, "phantom": ph, "rows": rows}


@pytest.fixture(scope="module")
def store(scans, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "vol.h5"
    summary = import_volumes(scans["images"], scans["candidates"], out, m=4, patch_size=S, spacing=1.0,
                             window=WINDOW, seed=0, val_fraction=0.0, test_fraction=0.0)
    with open_store(out) as s:
        yield {"summary": summary, "patches": s.read(np.arange(s.n)), "store": s, "path": out}


# ------------------------------------------------------------------------------------------------
# windows and the cutter
# ------------------------------------------------------------------------------------------------


def test_windows_presets_and_errors():
    assert parse_window("ctpa") == WINDOW_PRESETS["ctpa"] == (-100.0, 500.0)
    assert parse_window(" Lung ") == WINDOW_PRESETS["lung"]
    assert parse_window("-1000,400") == (-1000.0, 400.0) and parse_window((0, 1)) == (0.0, 1.0)
    assert parse_window("auto") is None and parse_window(None) is None
    np.testing.assert_array_equal(apply_window([-2000, -1000, -300, 400, 900], (-1000, 400)), [0, 0, 128, 255, 255])
    for bad, words in (("400,-1000", "LO must be < HI"), ("5,5", "LO must be < HI"), ("soft", "preset"),
                       ("a,b", "must be numbers"), ("1,2,3", "LO,HI"), ("nan,1", "finite")):
        with pytest.raises(AiftError, match=words):
            parse_window(bad)


def test_patch0_is_the_unaugmented_centred_view_and_draws_do_not_depend_on_it():
    a0, s0, t0 = augmentation_params(np.random.default_rng(5), 3, 4, (1.0, 1.5), 0.2)
    a1, s1, t1 = augmentation_params(np.random.default_rng(5), 3, 4, (1.0, 1.5), 0.2, plain_first=False)
    assert (a0[:, 0] == 0).all() and (s0[:, 0] == 1).all() and (t0[:, 0] == 0).all()
    np.testing.assert_array_equal(a0[:, 1:], a1[:, 1:])
    np.testing.assert_array_equal(t0[:, 1:], t1[:, 1:])
    assert (a1[:, 0] != 0).all()
    # a single bright voxel at an even-sized patch's centre lights the middle 2x2 pixels of every plane
    vol = np.full((21, 21, 21), -1000.0)
    vol[10, 10, 10] = 1000.0
    p = extract_patches(vol, [[10.0, 10.0, 10.0]], a0[:1], s0[:1], t0[:1], 8, 8.0, (-1000, 1000))
    for c in range(3):
        ch = p[0, 0, :, :, c].astype(float)
        assert ch[3:5, 3:5].min() > 0 and ch.sum() == ch[3:5, 3:5].sum()


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def test_three_formats_read_to_the_same_world_volume(scans):
    ph = scans["phantom"]
    hu = SP.render(ph)
    imgs = {k: read_volume(scans["images"] / name) for k, name in (("dcm", "dcm"), ("nii", "nii.nii.gz"),
                                                                    ("mhd", "mhd.mhd"))}
    import SimpleITK as sitk

    from aift_tf.importers.dicom import dicom_series
    from aift_tf.volumes import VolumeGeometry

    # the header-only geometry (used to check candidates before any pixel is read) is SimpleITK's
    g0, g1 = dicom_series(scans["images"] / "dcm").geometry, VolumeGeometry.of(imgs["dcm"])
    assert g0.size == g1.size
    for a, b in ((g0.origin, g1.origin), (g0.spacing, g1.spacing), (g0.direction, g1.direction)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for k, img in imgs.items():
        np.testing.assert_allclose(img.GetOrigin(), ph.origin, atol=1e-3, err_msg=k)
        np.testing.assert_allclose(img.GetSpacing(), ph.spacing, atol=1e-4, err_msg=k)
        np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), ph.direction, atol=1e-5, err_msg=k)
        # Hounsfield units: RescaleSlope 0.5 / RescaleIntercept -1024 applied to the DICOM's stored values
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), hu, err_msg=k)


def test_resampling_is_isotropic_and_keeps_world_positions(scans):
    img = read_volume(scans["images"] / "nii.nii.gz")
    vol, geo = resample_isotropic(img, spacing=1.0, cval=-1000.0)
    assert geo.spacing == (1.0, 1.0, 1.0) and vol.shape == geo.size[::-1]
    c = np.asarray(scans["phantom"].spheres[0]["centre"])
    k, j, i = np.round(geo.continuous_index([c])[0][::-1]).astype(int)
    assert vol[k, j, i] > 300  # the bright sphere is where the world says
    # display orientation: array axis 0 runs superior -> inferior (world z decreases)
    assert geo.world([[0, 0, 1]])[0, 2] < geo.world([[0, 0, 0]])[0, 2]


# ------------------------------------------------------------------------------------------------
# import-volumes
# ------------------------------------------------------------------------------------------------


def _centroid(ch, weight):
    w = np.clip(weight(ch.astype(float)), 0, None)
    yy, xx = np.mgrid[: ch.shape[0], : ch.shape[1]]
    return np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum()


def test_patch0_is_centred_on_its_sphere_in_all_three_planes(store):
    x = store["patches"]
    s = store["store"]
    bg = float(apply_window(BG, parse_window(WINDOW)))
    assert s.n == 6 and s.m == 4 and s.patch_shape == (S, S, 3)
    for i in range(s.n):
        bright = s.labels[i] == 1
        for c in range(3):
            ch = x[i, 0, :, :, c]
            cy, cx = _centroid(ch, (lambda v: v - bg - 20) if bright else (lambda v: bg - 20 - v))
            assert abs(cy - (S - 1) / 2) < 0.5 and abs(cx - (S - 1) / 2) < 0.5, (i, c, cy, cx)
        centre = x[i, 0, S // 2 - 1:S // 2 + 1, S // 2 - 1:S // 2 + 1].mean()
        assert centre > 225 if bright else centre < 40


def test_same_physical_volume_in_three_formats_gives_the_same_patches(store, scans):
    # patch 0 (unaugmented) of the store: the same for the DICOM, NIfTI and MetaImage copies
    x = store["patches"].astype(int)
    names = store["store"].attrs["group_names"]
    g = store["store"].groups
    assert sorted(names) == ["dcm", "mhd", "nii"]
    by = {names[k]: x[g == k][:, 0] for k in range(3)}  # each volume's two candidates, in CSV order
    for other in ("nii", "mhd"):
        d = np.abs(by["dcm"] - by[other])
        assert d.max() <= 2 and d.mean() < 0.05, (other, d.max(), d.mean())
    # whole augmented bags with the same seeds, 1.5 mm resampling
    from aift_tf.volumes import world_patches

    pts = [sp["centre"] for sp in scans["phantom"].spheres]
    bags = {}
    for name in ("dcm", "nii.nii.gz", "mhd.mhd"):
        vol, geo = resample_isotropic(read_volume(scans["images"] / name), 1.5, cval=-1000.0)
        bags[name] = world_patches(vol, geo, pts, 6, S, 20.0, (-1000, 500), seeds=[11, 12]).astype(int)
    for other in ("nii.nii.gz", "mhd.mhd"):
        d = np.abs(bags["dcm"] - bags[other])
        assert d.max() <= 2 and d.mean() < 0.05, (other, d.max(), d.mean())


def test_store_attrs_record_window_groups_and_layout(store, scans):
    s = store["store"]
    a = s.attrs
    assert a["window"] == [-1000.0, 500.0] and a["window_preset"] is None
    assert a["patch_kind"] == "2.5d" and a["channels"] == ["axial", "coronal", "sagittal"]
    assert a["group_kind"] == "volume" and a["spacing_mm"] == 1.0 and a["fov_mm"] == float(S)
    # candidate i = CSV data row i; labels from the class column; every volume its own group
    np.testing.assert_array_equal(s.labels, [r[4] for r in scans["rows"]])
    assert [a["group_names"][k] for k in s.groups] == [r[0] for r in scans["rows"]]
    assert store["summary"]["volumes"] == 3


def test_deterministic_and_preset_and_auto_window(scans, tmp_path):
    kw = dict(m=3, patch_size=S, seed=7, val_fraction=0.0, test_fraction=0.0)
    import_volumes(scans["images"], scans["candidates"], tmp_path / "a.h5", window="mediastinum", **kw)
    import_volumes(scans["images"], scans["candidates"], tmp_path / "b.h5", window="mediastinum", **kw)
    import_volumes(scans["images"], scans["candidates"], tmp_path / "c.h5", window="auto", **kw)
    with open_store(tmp_path / "a.h5") as a, open_store(tmp_path / "b.h5") as b, open_store(tmp_path / "c.h5") as c:
        np.testing.assert_array_equal(a.read(np.arange(a.n)), b.read(np.arange(b.n)))
        assert a.attrs["window_preset"] == "mediastinum" and a.attrs["window"] == [-125.0, 225.0]
        assert c.attrs["window"] == "auto" and set(c.attrs["volume_windows"]) == {"dcm", "nii", "mhd"}
        lo, hi = c.attrs["volume_windows"]["dcm"]
        assert lo < BG < hi


def test_split_column_series_uid_alias_and_unknown_labels(scans, tmp_path):
    import pydicom

    uid = str(pydicom.dcmread(next((scans["images"] / "dcm").iterdir())).SeriesInstanceUID)
    ph = scans["phantom"]
    c0 = ph.spheres[0]["centre"]
    rows = [[uid, *c0, 1, "train"], ["nii", *c0, "", "test"], ["mhd", *c0, -1, "val"], ["dcm", *c0, 0, "train"]]
    cand = _write_csv(tmp_path / "c.csv", rows, ("seriesuid", "coordX", "coordY", "coordZ", "class", "split"))
    import_volumes(scans["images"], cand, tmp_path / "o.h5", m=2, patch_size=S, window="ctpa")
    with open_store(tmp_path / "o.h5") as s:
        np.testing.assert_array_equal(s.labels, [1, -1, -1, 0])
        np.testing.assert_array_equal(s.split, [0, 2, 1, 0])
        assert s.attrs["group_names"][s.groups[0]] == "dcm" == s.attrs["group_names"][s.groups[3]]


def _bad_case(scans, tmp_path, case):
    """(images folder, candidates csv, kwargs) for one bad input."""
    images, cand = scans["images"], scans["candidates"]
    ph = scans["phantom"]
    kw = {}
    if case == "outside":
        far = np.asarray(ph.spheres[0]["centre"]) + [0, 0, 60.0]
        cand = _write_csv(tmp_path / "c.csv", [["nii", *far, 0]])
    elif case == "no-volume":
        cand = _write_csv(tmp_path / "c.csv", [["nii", *ph.spheres[0]["centre"], 0], ["ct99", 0, 0, 0, 1]])
    elif case == "class":
        cand = _write_csv(tmp_path / "c.csv", [["nii", *ph.spheres[0]["centre"], 2]])
    elif case == "window":
        kw["window"] = "500,-1000"
    else:  # a broken DICOM series or volume file in a copy of the images folder
        images = tmp_path / "images"
        shutil.copytree(scans["images"], images)
        files = sorted((images / "dcm").iterdir())
        import pydicom

        if case == "two-series":
            ph2 = _phantom()
            ph2.size = (40, 36, 3)
            SP.write_dicom_series(ph2, images / "dcm", seed=9)
        elif case == "spacing":
            dss = [pydicom.dcmread(f) for f in files]
            mid = sorted(zip([float(d.ImagePositionPatient[2]) for d in dss], files))[len(files) // 2][1]
            mid.unlink()  # a missing slice
        elif case == "orientation":
            ds = pydicom.dcmread(files[3])
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
            ds.save_as(files[3])
        elif case == "no-pixels":
            ds = pydicom.dcmread(files[2])
            del ds.PixelData
            ds.save_as(files[2])
        elif case == "unreadable-dicom":
            files[1].write_bytes(b"this is not DICOM")
        elif case == "unreadable-volume":
            (images / "nii.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    return images, cand, kw


BAD = [
    ("outside", "line 2: candidate", "is outside volume 'nii'"),
    ("no-volume", "line 3: seriesuid 'ct99' has no volume", "c.csv"),
    ("class", "line 2: unknown class '2'", "c.csv"),
    ("window", "LO must be < HI", "500,-1000"),
    ("two-series", "holds 2 DICOM series", "dcm"),
    ("spacing", "inconsistent slice spacing", "dcm"),
    ("orientation", "ImageOrientationPatient", "inconsistent orientation"),
    ("no-pixels", "has no pixel data", ".dcm"),
    ("unreadable-dicom", "unreadable DICOM file", ".dcm"),
    ("unreadable-volume", "nii.nii.gz", "cannot read volume"),
]


@pytest.mark.parametrize("case, words, where", BAD, ids=[b[0] for b in BAD])
def test_every_bad_input_is_one_line_naming_the_file_and_leaves_no_store(scans, tmp_path, case, words, where):
    images, cand, kw = _bad_case(scans, tmp_path, case)
    out = tmp_path / "o.h5"
    with pytest.raises(AiftError) as e:
        import_volumes(images, cand, out, m=2, patch_size=S, window=kw.get("window", WINDOW))
    msg = str(e.value)
    assert words in msg and where in msg and "\n" not in msg, msg
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.suffix == ".h5" or ".tmp" in p.name]


def test_volume_without_candidates_is_a_warning(scans, tmp_path):
    cand = _write_csv(tmp_path / "c.csv", [["nii", *scans["phantom"].spheres[0]["centre"], 1],
                                           ["mhd", *scans["phantom"].spheres[1]["centre"], 0]])
    seen = []
    r = import_volumes(scans["images"], cand, tmp_path / "o.h5", m=2, patch_size=S, warn=seen.append,
                       val_fraction=0.0, test_fraction=0.0)
    assert len(seen) == 1 and "'dcm' has no candidates" in seen[0] and r["volumes"] == 2
    with open_store(tmp_path / "o.h5") as s:
        assert s.n == 2 and s.attrs["group_names"] == ["mhd", "nii"]


def _cli(args):
    code = "import sys; from simulate.data_cli import main; main(sys.argv[1:])"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_import_volumes_and_its_errors(scans, tmp_path):
    out = tmp_path / "cli.h5"
    r = _cli(["import-volumes", scans["images"], "--candidates", scans["candidates"], "--out", out,
              "--patch-size", S, "--patches", 3, "--spacing", 1.5, "--window", "lung", "--seed", 3, "-q"])
    assert r.returncode == 0, r.stderr
    assert "6 candidates x 3 patches 16x16x3 uint8" in r.stdout and "volumes: 3" in r.stdout
    with open_store(out) as s:
        assert s.attrs["window_preset"] == "lung" and s.attrs["spacing_mm"] == 1.5 and s.attrs["seed"] == 3
    # bad input: one line, exit 2, nothing written
    images, cand, _ = _bad_case(scans, tmp_path, "outside")
    bad = tmp_path / "bad.h5"
    for extra in ([], ["--window", "400,-1000"]):
        r = _cli(["import-volumes", images, "--candidates", cand, "--out", bad, "-q", *extra])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert ("c.csv" in lines[0]) if not extra else ("LO must be < HI" in lines[0])
        assert not bad.exists()
    r = _cli(["import-folder", scans["root"], "--out", bad, "--window", "mediastinum,x", "-q"])
    assert r.returncode == 2 and r.stderr.strip() == ("error: window 'mediastinum,x': LO and HI must be numbers")


# ------------------------------------------------------------------------------------------------
# 2-D DICOM and 16-bit images in import-folder / import-csv
# ------------------------------------------------------------------------------------------------


def _radiograph(path, hu, seed, monochrome1=False):
    """A 2-D DICOM (one slice of a phantom) with a VOI window and RescaleSlope/Intercept."""
    ph = SP.Phantom(size=(hu.shape[1], hu.shape[0], 1), angle_deg=0.0)
    tmp = path.parent / f".tmp-{path.stem}"
    SP.write_dicom_series(ph, tmp, seed=seed, hu=hu[None].astype(np.float32))
    import pydicom

    ds = pydicom.dcmread(next(tmp.iterdir()))
    ds.WindowCenter, ds.WindowWidth = "100", "800"
    if monochrome1:
        ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path)
    shutil.rmtree(tmp)


def test_2d_dicom_and_16_bit_images_use_an_intensity_window(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    grad = np.tile(np.linspace(-300, 500, 20), (20, 1)).round()
    # ids (sorted class folders, then files): 0 negative/r0.dcm, 1 negative/r1.dcm, 2 negative/x.png,
    # 3 positive/r0.dcm, 4 positive/r1.dcm (MONOCHROME1), 5 positive/x.png
    for k, cls in enumerate(("negative", "positive")):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            _radiograph(root / cls / f"r{i}.dcm", grad + 50 * k, seed=10 * k + i, monochrome1=bool(k and i))
        # a 12-bit image stored as 16-bit PNG: /257 would leave it nearly black (max 15)
        Image.fromarray(rng.integers(0, 4096, (20, 20), dtype=np.uint16)).save(root / cls / "x.png")
    import_folder(root, tmp_path / "w.h5", m=1, window="-300,500", val_fraction=0.0, test_fraction=0.0)
    with open_store(tmp_path / "w.h5") as s:
        assert s.attrs["window"] == [-300.0, 500.0] and s.patch_shape == (20, 20, 1)
        x = s.read(np.arange(s.n))[:, 0, :, :, 0].astype(int)
        # HU -300..500 across the columns -> 0..255 (stored values through RescaleSlope/Intercept)
        assert x[0, :, 0].max() <= 1 and x[0, :, -1].min() >= 254
        # MONOCHROME1 (HU -250..550): inverted so that dense stays bright
        assert x[4, :, 0].mean() > 200 and x[4, :, -1].max() == 0
    import_folder(root, tmp_path / "a.h5", m=1, val_fraction=0.0, test_fraction=0.0)  # auto windows
    with open_store(tmp_path / "a.h5") as s:
        x = s.read(np.arange(s.n))[:, 0, :, :, 0].astype(int)
        assert s.attrs["window"] == "auto"
        assert x[0, :, 0].max() <= 1 and x[0, :, -1].min() >= 254  # the DICOM's own VOI window [-300, 500]
        assert x[2].min() == 0 and x[2].max() == 255               # 16-bit PNG: its percentiles, not /257
    (tmp_path / "l.csv").write_text("path,label\ndata/negative/r0.dcm,0\ndata/positive/r0.dcm,1\n")
    import_csv(tmp_path / "l.csv", tmp_path / "c.h5", m=2, window="ctpa", val_fraction=0.0, test_fraction=0.0)
    with open_store(tmp_path / "c.h5") as s:
        assert s.attrs["window_preset"] == "ctpa" and s.n == 2
    with pytest.raises(AiftError, match="LO must be < HI"):
        import_folder(root, tmp_path / "e.h5", window="5,1")
    broken = root / "negative" / "broken.dcm"
    broken.write_bytes(b"nope")
    with pytest.raises(AiftError, match="broken.dcm: unreadable DICOM file"):
        import_folder(root, tmp_path / "e.h5")
    assert not (tmp_path / "e.h5").exists()


# ------------------------------------------------------------------------------------------------
# gallery
# ------------------------------------------------------------------------------------------------


def test_gallery_shows_the_three_planes_side_by_side_labelled(store, tmp_path):
    from PIL import Image

    from aift_tf.gallery import montage, store_planes, write_gallery

    s = store["store"]
    assert store_planes(s) == ["axial", "coronal", "sagittal"]
    rows = [{"id": i, "group": int(s.groups[i]), "score": 0.5, "probability": 0.2} for i in (0, 1)]
    page = write_gallery(tmp_path, s, rows, {"round": 1, "class_names": s.class_names},
                         group_names=s.attrs["group_names"]).read_text()
    assert "axial | coronal | sagittal" in page
    with Image.open(tmp_path / "patches" / "0.png") as im:
        a = np.asarray(im.convert("RGB"))
    plain = montage(s.read([0])[0])
    assert a.shape[0] > plain.shape[0] * 3 and a.shape[1] < plain.shape[1]  # m rows x 3 planes, not 1 x m
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()  # grayscale planes + black text
    # the simulated PE app's stores (channels attribute) are 2.5-D too; an ordinary RGB store is not
    st = type("St", (), {"attrs": {"channels": ["axial", "coronal", "sagittal"]}, "patch_shape": (8, 8, 3)})()
    assert store_planes(st) == ["axial", "coronal", "sagittal"]
    assert store_planes(type("St", (), {"attrs": {}, "patch_shape": (8, 8, 3)})()) is None
