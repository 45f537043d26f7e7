"""``aift-data``: make, import and inspect candidate stores.

Commands::

    aift-data generate --app NAME [--scale quick|paper] [--seed K] --out STORE.h5 [--overwrite]
    aift-data inspect STORE.h5 [--montage PNG | --no-montage] [--candidates N] [--seed K]
    aift-data import-npz FILE.npz --out STORE.h5 [--patches M] [--patch-size S] [--seed K] ...
    aift-data import-folder DIR --out STORE.h5 [--patches M] [--image-size S|HxW] [--color auto|gray|rgb] ...
    aift-data import-csv FILE.csv --out STORE.h5 [--patches M] [--class-names a,b,...] [--window LO,HI] ...
    aift-data import-volumes IMAGES --candidates CANDIDATES.csv --out STORE.h5 [--patch-size P] [--patches M]
              [--spacing MM] [--window LO,HI|PRESET|auto] [--seed K] ...
    aift-data pretrain [--model NAME] [--input-shape H,W,C] [--out W.weights.h5] ...   (TensorFlow)
    aift-data pretrain --self-supervised --data STORE.h5 --out M0.weights.h5 [--steps N] ...  (TensorFlow)

Every malformed input ends with one line ``error: ...`` on stderr and exit code 2 (no traceback,
no output file). An existing ``--out`` is refused unless ``--overwrite`` is given, which replaces a
candidate store only (never an input, a ledger or any other file); outputs are written atomically.
``inspect`` writes its montage to ``--montage`` (default: ``STORE.montage.png`` beside the store; a previous
PNG there is replaced, never the store or another file; ``--no-montage`` skips it).

Nothing here imports TensorFlow except ``pretrain`` (lazily): ``aift-data --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from aift_tf.cli_support import run_cli, version_option
from aift_tf.errors import AiftError
from aift_tf.progress import Progress
from simulate.apps import SCALES  # TensorFlow-free

MONTAGE_MIN_TILE = 48  # patches are upscaled (nearest) to at least this many pixels in the montage
MONTAGE_MAX_PATCHES = 32  # columns of the montage: the first patches of each bag
MONTAGE_MAX_PIXELS = 1 << 26  # a bigger montage is refused (lower --candidates)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _check_out(out: str, overwrite: bool, store: bool = True) -> Path:
    """An output path: in an existing folder, not a folder; an existing file only with ``overwrite`` and, for a
    store (``store=True``), only if it is a candidate store (``--overwrite`` never replaces anything else)."""
    p = Path(out)
    if not p.parent.exists():
        raise AiftError(f"{p}: parent folder {p.parent} does not exist")
    if not p.parent.is_dir():
        raise AiftError(f"{p}: {p.parent} is a file, not a folder")
    if p.is_dir():
        raise AiftError(f"{p}: --out is a folder, expected a file path")
    if p.exists() and not overwrite:
        raise AiftError(f"{p}: output already exists; pass --overwrite to replace it")
    if p.exists() and store:
        from aift_tf.importers import is_store_file

        if not is_store_file(p):
            raise AiftError(f"{p}: exists and is not a candidate store; --overwrite replaces only a store "
                            f"(give another path)")
    return p


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _check_seed(seed):
    from aift_tf.importers import check_seed

    return check_seed(seed)


def _check_montage(path: Path, store) -> None:
    """The montage replaces a PNG only: never the store itself nor any other file."""
    from aift_tf.importers import same_file

    if not path.parent.exists():
        raise AiftError(f"{path}: parent folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise AiftError(f"{path}: {path.parent} is a file, not a folder")
    if path.is_dir():
        raise AiftError(f"{path}: --montage is a folder, expected a .png path")
    if same_file(path, store):
        raise AiftError(f"{path}: --montage would overwrite the store itself")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as e:
            raise AiftError(f"{path}: cannot read the existing file ({e.strerror})") from None
        if head != b"\x89PNG\r\n\x1a\n":
            raise AiftError(f"{path}: exists and is not a PNG image; the montage replaces only a previous montage")


def _parse_size(ctx, param, value):
    if value is None:
        return None
    text = value.lower().replace(",", "x")
    try:
        parts = [int(v) for v in text.split("x")]
    except ValueError:
        raise click.BadParameter(f"{value!r} must look like 28 or 28x32 (height x width)") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter(f"{value!r} must look like 28 or 28x32 with positive sizes")
    return tuple(parts)


def _augment_options(f):
    """Shared options of the importers: bag size and augmentation."""
    opts = [
        click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
                     help="Candidate store to write (.h5)."),
        click.option("--patches", "-m", "patches", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Patches per candidate (m)."),
        click.option("--patch-size", type=click.IntRange(min=1), default=None,
                     help="Patch side S in pixels [default: the smaller image side]."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of augmentation and splits."),
        click.option("--val-fraction", type=float, default=0.1, show_default=True,
                     help="Fraction of groups sent to val when the input has no val split."),
        click.option("--test-fraction", type=float, default=0.1, show_default=True,
                     help="Fraction of groups sent to test when the input has no test split."),
        click.option("--scale-min", type=float, default=0.7, show_default=True,
                     help="Smallest crop side as a fraction of the image side (largest: 1)."),
        click.option("--rotate-degrees", type=float, default=0.0, show_default=True,
                     help="Maximum small-angle rotation (0: off)."),
        click.option("--no-flips", is_flag=True, help="No random horizontal flips."),
        click.option("--no-rot90", is_flag=True, help="No random 90-degree rotations."),
        click.option("--no-full", is_flag=True, help="Patch 0 is a random crop too (not the whole image)."),
        click.option("--app", default=None, help="App name recorded in the store [default: importer:<name>]."),
        click.option("--overwrite", is_flag=True, help="Replace an existing store at --out (never another file)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _augmentation(scale_min, rotate_degrees, no_flips, no_rot90, no_full):
    from aift_tf.importers.augment import Augmentation

    return Augmentation(scale_range=(scale_min, 1.0), rotate_degrees=rotate_degrees, flips=not no_flips,
                        rot90=not no_rot90, include_full=not no_full)


def _print_summary(store_path) -> None:
    from aift_tf.store import open_store

    with open_store(store_path) as s:
        for line in _describe(s):
            click.echo(line)


def _describe(s) -> list[str]:
    import numpy as np

    from aift_tf.store import SPLITS

    H, W, C = s.patch_shape
    lines = [
        f"store: {s.path}",
        f"app: {s.app}",
        f"candidates (n): {s.n}",
        f"patches per candidate (m): {s.m}",
        f"patch shape: {H}x{W}x{C}",
        f"dtype: {np.dtype(s.dtype).name}",
        f"classes ({s.num_classes}): {', '.join(s.class_names)}",
    ]
    unknown = bool((s.labels < 0).any())
    cols = list(s.class_names) + (["unknown"] if unknown else []) + ["total"]
    width = max(8, *(len(c) for c in cols))
    lines.append("counts (split x class):")
    lines.append("  " + "split".ljust(7) + "".join(c.rjust(width + 2) for c in cols))
    totals = np.zeros(len(cols), np.int64)
    for code, name in enumerate(SPLITS):
        sel = s.split == code
        row = [int(((s.labels == k) & sel).sum()) for k in range(s.num_classes)]
        if unknown:
            row.append(int(((s.labels < 0) & sel).sum()))
        row.append(int(sel.sum()))
        totals += row
        lines.append("  " + name.ljust(7) + "".join(str(v).rjust(width + 2) for v in row))
    lines.append("  " + "total".ljust(7) + "".join(str(int(v)).rjust(width + 2) for v in totals))
    groups = [f"{name} {np.unique(s.groups[s.split == code]).size}" for code, name in enumerate(SPLITS)]
    lines.append(f"groups per split: {', '.join(groups)} (total {np.unique(s.groups).size})")
    return lines


def _montage(s, out: Path, per_class: int, seed: int) -> int:
    """Write a PNG grid: rows = candidates (``per_class`` from each class, then unknown), cols = patches."""
    import numpy as np
    from PIL import Image, ImageDraw

    from aift_tf.files import atomic_path

    rng = np.random.default_rng(seed)
    rows, names = [], []
    row_classes = list(range(s.num_classes)) + ([-1] if (s.labels < 0).any() else [])
    for k in row_classes:
        ids = np.flatnonzero(s.labels == k)
        if ids.size == 0:
            continue
        pick = np.sort(rng.choice(ids, size=min(per_class, ids.size), replace=False))
        rows.extend(int(i) for i in pick)
        names.extend(f"{s.class_names[k] if k >= 0 else 'unknown'} #{int(i)}" for i in pick)
    if not rows:
        raise AiftError(f"{s.path}: no candidates to show")
    H, W, C = s.patch_shape
    cols = min(s.m, MONTAGE_MAX_PATCHES)
    scale = max(1, math.ceil(MONTAGE_MIN_TILE / max(1, min(H, W))))
    th, tw, pad = H * scale, W * scale, 2
    label_w = 8 + 6 * max(len(n) for n in names)
    size = (label_w + cols * (tw + pad) + pad, len(rows) * (th + pad) + pad)
    if size[0] * size[1] > MONTAGE_MAX_PIXELS:
        raise AiftError(f"{out}: the montage would be {size[0]}x{size[1]} pixels (at most {MONTAGE_MAX_PIXELS}); "
                        f"lower --candidates ({per_class}) or use --no-montage")
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    patches = s.read(np.asarray(rows))[:, :cols]  # (r, cols, H, W, C) in row order
    if patches.dtype != np.uint8:
        patches = np.clip(np.rint(patches * 255.0), 0, 255).astype(np.uint8)
    if C == 1:
        patches = np.repeat(patches, 3, axis=-1)
    elif C != 3:
        patches = np.repeat(patches[..., :1], 3, axis=-1)
    for r, (bag, name) in enumerate(zip(patches, names)):
        y = pad + r * (th + pad)
        draw.text((4, y + th // 2 - 5), name, fill=(0, 0, 0))
        for j, p in enumerate(bag):
            tile = np.repeat(np.repeat(p, scale, axis=0), scale, axis=1)
            canvas.paste(Image.fromarray(tile, "RGB"), (label_w + pad + j * (tw + pad), y))
    with atomic_path(out, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
    return len(rows)


def _finish_import(summary, quiet) -> None:
    counts = summary["counts"]
    click.echo(f"wrote {summary['out']}: {summary['n']} candidates x {summary['m']} patches "
               f"{'x'.join(map(str, summary['patch_shape']))} {summary['dtype']}; "
               + ", ".join(f"{k} {v}" for k, v in counts.items())
               + f"; classes: {', '.join(summary['class_names'])}")


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@version_option("aift-data")
def cli():
    """Make, import and inspect AIFT candidate stores (HDF5)."""


@cli.command()
@click.option("--app", "app", required=True, help="Simulated application (see simulate.apps.APP_NAMES).")
@click.option("--scale", type=click.Choice(SCALES), default="quick", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Candidate store to write (.h5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out (never another file).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def generate(app, scale, seed, out, overwrite, quiet):
    """Generate a simulated application as a candidate store."""
    from simulate import apps

    try:
        apps.get_app(app)  # unknown name → AiftError listing the valid ones
    except ImportError as e:
        raise AiftError(f"app {app!r} is not available in this installation ({e})") from None
    seed = _check_seed(seed)
    out = _check_out(out, overwrite)
    with Progress(quiet) as bars:
        bar = bars.counter(f"generate {app}")
        apps.generate_store(app, out, scale=scale, seed=seed, progress=bar)
    _print_summary(out)


@cli.command()
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--montage", type=click.Path(dir_okay=False), default=None,
              help="PNG of a few candidates' patches [default: STORE.montage.png beside the store].")
@click.option("--no-montage", is_flag=True, help="Do not write a montage.")
@click.option("--candidates", "-n", type=click.IntRange(min=1), default=3, show_default=True,
              help="Candidates shown per class in the montage.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the montage's candidate choice.")
def inspect(store, montage, no_montage, candidates, seed):
    """Print a store's summary and write a montage of its patches.

    The montage has one row per candidate (CANDIDATES from each class, then unlabelled ones) and one
    column per patch (patch 0 first, at most 32); it replaces a previous montage (a PNG) of the same name.
    """
    from aift_tf.store import open_store

    seed = _check_seed(seed)
    path = Path(montage) if montage else Path(store).with_suffix(".montage.png")
    with open_store(store) as s:
        if not no_montage:
            _check_montage(path, store)
        for line in _describe(s):
            click.echo(line)
        if not no_montage:
            shown = _montage(s, path, candidates, seed)
            cols = f"{s.m}" if s.m <= MONTAGE_MAX_PATCHES else f"the first {MONTAGE_MAX_PATCHES} of {s.m}"
            click.echo(f"montage: {path} ({shown} candidates x {cols} patches)")


@cli.command("import-npz")
@click.argument("npz", type=click.Path(dir_okay=False))
@_augment_options
def import_npz_cmd(npz, out, patches, patch_size, seed, val_fraction, test_fraction, scale_min, rotate_degrees,
                   no_flips, no_rot90, no_full, app, overwrite, quiet):
    """Import a MedMNIST-layout .npz (train_/val_/test_ images and labels)."""
    from aift_tf.importers import import_npz

    aug = _augmentation(scale_min, rotate_degrees, no_flips, no_rot90, no_full)
    _check_out(out, overwrite, store=False)  # the importer checks the rest (inputs first)
    with Progress(quiet) as bars:
        bar = bars.counter("import")
        summary = import_npz(npz, out, m=patches, patch_size=patch_size, seed=seed, val_fraction=val_fraction,
                             test_fraction=test_fraction, app=app, overwrite=overwrite, augmentation=aug,
                             progress=bar, warn=_warn)
    _finish_import(summary, quiet)


def _window_option(default, help_text):
    def check(ctx, param, value):
        from aift_tf.volumes import parse_window

        if value is not None:
            parse_window(value)  # LO >= HI, unknown preset, ... -> one-line error, exit 2
        return value

    return click.option("--window", default=default, callback=check, metavar="LO,HI|PRESET|auto",
                        show_default=default is not None, help=help_text)


_PRESETS = "lung, mediastinum, ctpa, bone, brain"
_image_options = [
    click.option("--image-size", callback=_parse_size, default=None,
                 help="Resize every image to S or HxW [default: the most frequent size]."),
    click.option("--color", type=click.Choice(["auto", "gray", "rgb"]), default="auto", show_default=True,
                 help="auto: grayscale if every image is grayscale, else RGB."),
    _window_option("auto", "Intensity window for DICOM (.dcm) and 16-bit images: LO,HI in stored units "
                   f"(DICOM: after RescaleSlope/Intercept), a preset ({_PRESETS}) or auto (the DICOM's own "
                   "WindowCenter/Width, else the image's 0.5-99.5 percentiles). 8-bit images are used as they are."),
]


def _image_opts(f):
    for o in reversed(_image_options):
        f = o(f)
    return f


@cli.command("import-folder")
@click.argument("root", type=click.Path(file_okay=False))
@_augment_options
@_image_opts
@click.option("--group-by", type=click.Choice(["image", "subfolder"]), default="image", show_default=True,
              help="Group (patient) = each image, or the first folder below the class folder.")
def import_folder_cmd(root, out, patches, patch_size, seed, val_fraction, test_fraction, scale_min,
                      rotate_degrees, no_flips, no_rot90, no_full, app, overwrite, quiet, image_size, color,
                      window, group_by):
    """Import ROOT/<class>/.../<image> (one sub-folder per class, sorted names = class ids)."""
    from aift_tf.importers import import_folder

    aug = _augmentation(scale_min, rotate_degrees, no_flips, no_rot90, no_full)
    _check_out(out, overwrite, store=False)  # the importer checks the rest (inputs first)
    with Progress(quiet) as bars:
        bar = bars.counter("import")
        summary = import_folder(root, out, m=patches, patch_size=patch_size, seed=seed,
                                val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size,
                                color=color, window=window, group_by=group_by, app=app, overwrite=overwrite, augmentation=aug,
                                progress=bar)
    _finish_import(summary, quiet)


@cli.command("import-csv")
@click.argument("csv_file", metavar="CSV", type=click.Path(dir_okay=False))
@_augment_options
@_image_opts
@click.option("--class-names", default=None, help="Comma-separated class names fixing the class order.")
def import_csv_cmd(csv_file, out, patches, patch_size, seed, val_fraction, test_fraction, scale_min,
                   rotate_degrees, no_flips, no_rot90, no_full, app, overwrite, quiet, image_size, color,
                   window, class_names):
    """Import a CSV with columns path,label[,group][,split] (paths relative to the CSV)."""
    from aift_tf.importers import import_csv

    names = [c.strip() for c in class_names.split(",")] if class_names else None
    aug = _augmentation(scale_min, rotate_degrees, no_flips, no_rot90, no_full)
    _check_out(out, overwrite, store=False)  # the importer checks the rest (inputs first)
    with Progress(quiet) as bars:
        bar = bars.counter("import")
        summary = import_csv(csv_file, out, m=patches, patch_size=patch_size, seed=seed,
                             val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size,
                             color=color, window=window, class_names=names, app=app, overwrite=overwrite, augmentation=aug,
                             progress=bar, warn=_warn)
    _finish_import(summary, quiet)


def _parse_floats(ctx, param, value):
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} must be comma-separated numbers like 1,1.2,1.5") from None


@cli.command("import-volumes")
@click.argument("images", type=click.Path(file_okay=False))
@click.option("--candidates", required=True, type=click.Path(dir_okay=False),
              help="CSV with columns seriesuid,coordX,coordY,coordZ[,class][,split] (world mm, LPS).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Candidate store to write (.h5).")
@click.option("--patch-size", type=click.IntRange(min=2), default=32, show_default=True,
              help="Patch side P in pixels (each patch: three P x P planes).")
@click.option("--patches", "-m", "patches", type=click.IntRange(min=1), default=8, show_default=True,
              help="Patches per candidate (m); patch 0 is the unaugmented centred view.")
@click.option("--spacing", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Isotropic resampling (mm).")
@_window_option("auto", f"Intensity window: LO,HI (e.g. -1000,400), a preset ({_PRESETS}) or auto "
                "(per volume: its 0.5-99.5 percentiles; for MR).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of augmentation and split.")
@click.option("--fov", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Millimetres spanned by a patch at scale 1 [default: patch size x spacing].")
@click.option("--scales", callback=_parse_floats, default="1,1.2,1.5", show_default=True,
              help="Field-of-view scales of the augmented patches.")
@click.option("--max-shift", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="Translation of augmented patches, fraction of the field of view per axis.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Fraction of volumes sent to val when the CSV has no split column.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Fraction of volumes sent to test when the CSV has no split column.")
@click.option("--class-names", default="negative,positive", show_default=True,
              help="Comma-separated names of class 0, 1, ...")
@click.option("--app", default=None, help="App name recorded in the store [default: volumes:<IMAGES name>].")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out (never another file).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def import_volumes_cmd(images, candidates, out, patch_size, patches, spacing, window, seed, fov, scales, max_shift,
                       val_fraction, test_fraction, class_names, app, overwrite, quiet):
    """Import CT/MR volumes (DICOM series folders, .nii/.nii.gz, .mhd, .mha, .nrrd in IMAGES) with a
    candidate list as 2.5-D patches (axial, coronal, sagittal planes as channels).

    Volume id = file name without its extension, or the DICOM sub-folder's name (its SeriesInstanceUID
    also matches seriesuid). One volume is in memory at a time; see data/README.md.
    """
    from aift_tf.importers import import_volumes

    names = [c.strip() for c in class_names.split(",")]
    _check_out(out, overwrite, store=False)  # the importer checks the rest (inputs first)
    with Progress(quiet) as bars:
        bar = bars.counter("volumes")
        summary = import_volumes(images, candidates, out, m=patches, patch_size=patch_size, spacing=spacing,
                                 window=window, seed=seed, fov=fov, scales=scales, max_shift=max_shift,
                                 val_fraction=val_fraction, test_fraction=test_fraction, class_names=names,
                                 app=app, overwrite=overwrite, progress=bar,
                                 warn=_warn)
    _finish_import(summary, quiet)
    click.echo(f"volumes: {summary['volumes']}")


def _parse_shape(ctx, param, value):
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.lower().replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} must look like 32,32,3") from None
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"{value!r} must look like 32,32,3")
    return shape


@cli.command()
@click.option("--model", default=None, help="Zoo model [default: simulate.pretrain.DEFAULT_MODEL, small_cnn].")
@click.option("--input-shape", callback=_parse_shape, default=None, metavar="H,W,C",
              help="Patch shape M0 will see [default: 32,32,3].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Weights file (*.weights.h5) [default: aift_tf/zoo/pretrained/<model>_HxWxC.weights.h5].")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Source training images.")
@click.option("--val-samples", type=click.IntRange(min=1), default=None)
@click.option("--probe-samples", type=click.IntRange(min=0), default=None, help="0 skips the linear probe.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--self-supervised", "self_supervised", is_flag=True,
              help="Pre-train on the unlabeled patches of --data instead (SimCLR: two patches of a candidate are a "
                   "positive pair; labels never read; aift_tf.ssl).")
@click.option("--data", type=click.Path(dir_okay=False), default=None, metavar="STORE.h5",
              help="With --self-supervised: the candidate store whose pool patches are used.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="With --self-supervised: gradient steps [default: 600, under 3 min on a quiet 2-core CPU at quick scale].")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --self-supervised: NT-Xent temperature [default: 0.2].")
@click.option("--overwrite", is_flag=True, help="Replace existing weights.")
@click.option("--quiet", "-q", is_flag=True)
def pretrain(model, input_shape, out, seed, epochs, samples, val_samples, probe_samples, batch_size, lr,
             self_supervised, data, steps, temperature, overwrite, quiet):
    """Pre-train M0 offline on the procedural source task (simulate.pretrain), or with --self-supervised on a
    store's own unlabeled patches (aift_tf.ssl); needs TensorFlow."""
    import json

    if seed is not None:
        seed = _check_seed(seed)
    if self_supervised:
        given = [f"--{k.replace('_', '-')}" for k, v in dict(input_shape=input_shape, epochs=epochs, samples=samples,
                                                                val_samples=val_samples,
                                                                probe_samples=probe_samples).items() if v is not None]
        if given:
            raise AiftError(f"{given[0]} does not apply to --self-supervised (the store fixes the input shape; "
                            f"use --steps)")
        if data is None or out is None:
            raise AiftError("--self-supervised needs --data STORE.h5 and --out M0.weights.h5")
        if not Path(data).is_file():
            raise AiftError(f"--data {data}: no such file")
        from aift_tf.importers import same_file

        if same_file(out, data):
            raise AiftError(f"{out}: --out would overwrite the store given as --data")
        from aift_tf import ssl

        target = _check_out(out, overwrite, store=False)
        kwargs = {k: v for k, v in dict(model=model, steps=steps, batch_size=batch_size, lr=lr,
                                        temperature=temperature, seed=seed).items() if v is not None}
        card = ssl.ssl_pretrain(data, target, progress=not quiet, **kwargs)
        click.echo(json.dumps({k: card.get(k) for k in ("weights_file", "sha256", "final_loss",
                                                        "final_positive_accuracy")}))
        return
    for name, v in (("--data", data), ("--steps", steps), ("--temperature", temperature)):
        if v is not None:
            raise AiftError(f"{name} applies only to --self-supervised")
    from simulate import pretrain as pt

    kwargs = {k: v for k, v in dict(model=model, input_shape=input_shape, seed=seed, epochs=epochs,
                                    samples=samples, val_samples=val_samples, probe_samples=probe_samples,
                                    batch_size=batch_size, lr=lr).items() if v is not None}
    target = Path(out) if out else pt.WEIGHTS_DIR / pt.weights_filename(
        kwargs.get("model", pt.DEFAULT_MODEL), kwargs.get("input_shape", pt.DEFAULT_INPUT_SHAPE))
    _check_out(str(target), overwrite, store=False)
    card = pt.pretrain(out=target, progress=not quiet, **kwargs)
    click.echo(json.dumps({k: card.get(k) for k in ("weights_file", "sha256", "source_val_accuracy")}))


def main(argv=None) -> None:
    """Entry point of the ``aift-data`` console script."""
    run_cli(cli, argv, prog_name="aift-data")


if __name__ == "__main__":
    main()
