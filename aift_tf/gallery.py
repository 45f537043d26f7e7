"""The annotation gallery of a query round: ``gallery.html`` + one patch montage PNG per candidate.

The page is self-contained (inline CSS, no script, no external asset, no server): it opens from disk in any
browser, offline. A 2.5-D store (store attributes ``patch_kind = "2.5d"`` and ``channels`` = the three plane
names, as written by ``aift-data import-volumes`` and the simulated PE app) shows each patch's three planes
side by side as grayscale tiles, one row per patch, under labelled column headings (axial | coronal |
sagittal) instead of one RGB tile per patch. Every string taken from user data (ids, group names, class names, app and project
names) is passed through :func:`html.escape`; image paths are URL-quoted as well.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from urllib.parse import quote

import numpy as np

from aift_tf._io import atomic_path, write_text_atomic

PATCHES = "patches"
MIN_TILE = 96  # patches are upscaled (nearest neighbour) to at least this many pixels


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def montage(bag: np.ndarray) -> np.ndarray:
    """(m, H, W, C) patches (uint8 or float in [0, 1]) → one RGB uint8 row image with 2-px white gaps."""
    x = np.asarray(bag)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if x.ndim == 3:
        x = x[..., None]
    c = x.shape[-1]
    if c == 1:
        x = np.repeat(x, 3, axis=-1)
    elif c != 3:
        x = np.repeat(x[..., :1], 3, axis=-1)
    m, h, w, _ = x.shape
    scale = max(1, math.ceil(MIN_TILE / max(1, min(h, w))))
    pad = 2
    out = np.full((h * scale, m * (w * scale + pad) - pad, 3), 255, np.uint8)
    for j in range(m):
        tile = np.repeat(np.repeat(x[j], scale, axis=0), scale, axis=1)
        out[:, j * (w * scale + pad): j * (w * scale + pad) + w * scale] = tile
    return out


PLANE_NAMES = ("axial", "coronal", "sagittal")


def store_planes(store):
    """The plane names of a 2.5-D store's three channels, or None for an ordinary store.

    A store is 2.5-D when its ``channels`` attribute lists three names and either ``patch_kind`` is
    ``"2.5d"`` or the names are axial / coronal / sagittal (the simulated PE app's stores).
    """
    attrs = getattr(store, "attrs", {}) or {}
    ch = attrs.get("channels")
    if not (isinstance(ch, (list, tuple)) and len(ch) == 3 and tuple(store.patch_shape)[-1] == 3):
        return None
    if attrs.get("patch_kind") == "2.5d" or sorted(map(str, ch)) == sorted(PLANE_NAMES):
        return [str(c) for c in ch]
    return None


def montage_planes(bag: np.ndarray, planes) -> np.ndarray:
    """(m, H, W, 3) 2.5-D patches -> one RGB uint8 image: one row per patch, the three channels side by
    side as grayscale tiles under their plane names, the patch index on the left (for ``import-volumes``
    stores #0 is the unaugmented view centred on the candidate)."""
    from PIL import Image, ImageDraw

    x = np.asarray(bag)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    m, h, w, _ = x.shape
    scale = max(1, math.ceil(MIN_TILE / max(1, min(h, w))))
    th, tw, pad, head, left = h * scale, w * scale, 2, 14, 22
    canvas = Image.new("RGB", (left + 3 * (tw + pad), head + m * (th + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(planes):
        draw.text((left + c * (tw + pad) + 2, 1), str(name), fill=(0, 0, 0))
    for j in range(m):
        y = head + j * (th + pad)
        draw.text((2, y + th // 2 - 5), f"#{j}", fill=(90, 90, 90))
        for c in range(3):
            tile = np.repeat(np.repeat(x[j, :, :, c], scale, axis=0), scale, axis=1)
            canvas.paste(Image.fromarray(tile, "L").convert("RGB"), (left + c * (tw + pad), y))
    return np.asarray(canvas)


def write_montage(path, bag, planes=None) -> None:
    """Write a candidate's montage PNG: :func:`montage`, or :func:`montage_planes` when ``planes`` are given."""
    from PIL import Image

    img = montage(bag) if planes is None else montage_planes(bag, planes)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(img, "RGB").save(tmp, format="PNG")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{font-size:20px;margin:0 0 4px 0}
header p{margin:2px 0;font-size:13px;color:#c9cfdb}
.how{background:#fff;border-bottom:1px solid #dde1e8;padding:10px 24px;font-size:13px}
.how code{background:#eef0f4;padding:1px 4px;border-radius:3px}
.legend span{display:inline-block;background:#eef0f4;border-radius:10px;padding:1px 8px;margin:0 4px 0 0}
main{display:flex;flex-wrap:wrap;gap:14px;padding:16px 24px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card img{display:block;image-rendering:pixelated;max-width:100%;border-radius:3px}
.meta{display:flex;gap:14px;flex-wrap:wrap;margin-top:8px;font-size:13px}
.meta b{font-weight:600}
.rank{font-size:12px;color:#6b7385;float:right}
.id{font-size:16px;font-weight:700}
.bar{height:6px;background:#eef0f4;border-radius:3px;margin-top:6px;overflow:hidden}
.bar i{display:block;height:100%;background:#c0392b}
footer{padding:8px 24px 24px;font-size:12px;color:#6b7385}
"""


def render_html(rows, info, *, project_name="", app="", m=1, group_names=None, image_names=None, planes=None) -> str:
    """The gallery page. ``rows``: dicts with id, group, score, probability, predicted (in display order);
    ``planes``: the plane names of a 2.5-D store (see :func:`store_planes`), else None."""
    classes = list(info.get("class_names", []))
    binary = len(classes) == 2
    prob_label = "P(" + classes[1] + ")" if binary else "max-class prob."
    legend = "".join(f"<span>{i} = {_esc(c)}</span>" for i, c in enumerate(classes))
    if planes:
        what = f"each card is one candidate: {m} rows of 2.5-D patches, columns {_esc(' | '.join(planes))}"
        alt = f"{m} patches x planes {' | '.join(planes)} of candidate "
    else:
        what = f"each row of images is one candidate's {m} patches"
        alt = f"{m} patches of candidate "
    cards = []
    for rank, r in enumerate(rows, 1):
        gid = r["group"]
        gname = group_names[gid] if isinstance(group_names, (list, tuple)) and 0 <= gid < len(group_names) else (
            group_names.get(str(gid), gid) if isinstance(group_names, dict) else gid)
        img = image_names[rank - 1] if image_names else f"{PATCHES}/{r['id']}.png"
        p = float(r["probability"])
        pred = "" if binary else f"<span>predicted <b>{_esc(r.get('predicted', ''))}</b></span>"
        cards.append(
            f'<div class="card" id="c{_esc(r["id"])}"><span class="rank">#{rank}</span>'
            f'<span class="id">id {_esc(r["id"])}</span>'
            f'<img src="{_esc(quote(img))}" alt="{_esc(alt)}{_esc(r["id"])}">'
            f'<div class="meta"><span>group <b>{_esc(gname)}</b></span><span>score <b>{r["score"]:.4f}</b></span>'
            f'<span>{_esc(prob_label)} <b>{p:.3f}</b></span>{pred}</div>'
            f'<div class="bar" title="{_esc(prob_label)}"><i style="width:{100 * min(max(p, 0.0), 1.0):.1f}%"></i></div>'
            f"</div>")
    k = info.get("round", 0)
    title = f"{project_name} · round {k:03d}" if project_name else f"round {k:03d}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<header><h1>{_esc(title)}: {len(rows)} candidates to label</h1>"
        f"<p>data: {_esc(app)} · model after teach round {_esc(info.get('model_round', ''))} · strategy "
        f"{_esc(info.get('strategy', ''))} (ω = {_esc(info.get('omega', ''))}) · {_esc(info.get('created', ''))}</p>"
        f"<p>ordered by score (most worthy first); {what}</p></header>\n"
        f"<div class=\"how\">Write each candidate's label in the <code>label</code> column of "
        f"<code>queries.csv</code> (beside this page) as a class index or name, leave it empty to skip, then run "
        f"<code>aift teach PROJECT round-{k:03d}/queries.csv</code>. "
        f"<span class=\"legend\">Classes: {legend}</span></div>\n"
        f"<main>\n" + "\n".join(cards) + "\n</main>\n"
        f"<footer>aift · {_esc(len(rows))} of {_esc(info.get('pool_left', ''))} unlabeled candidates · "
        f"probability = {_esc(info.get('probability', ''))} of the mean patch prediction</footer>\n"
        "</body></html>\n"
    )


def write_gallery(folder, store, rows, info, *, project_name="", group_names=None) -> Path:
    """Write ``folder/patches/<id>.png`` for every row and ``folder/gallery.html``."""
    folder = Path(folder)
    (folder / PATCHES).mkdir(exist_ok=True)
    ids = np.array([r["id"] for r in rows], dtype=np.int64)
    planes = store_planes(store)
    if ids.size:
        bags = store.read(ids)
        for i, bag in zip(ids.tolist(), bags):
            write_montage(folder / PATCHES / f"{i}.png", bag, planes)
    page = render_html(rows, info, project_name=project_name, app=store.app, m=store.m, group_names=group_names,
                       planes=planes)
    write_text_atomic(folder / "gallery.html", page)
    return folder / "gallery.html"
