"""The annotation gallery of a query round: ``gallery.html`` + one patch montage PNG per candidate.

The page is self-contained (inline CSS, no script, no external asset, no server): it opens from disk in any
browser, offline. Every string taken from user data (ids, group names, class names, app and project
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


def write_montage(path, bag) -> None:
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(montage(bag), "RGB").save(tmp, format="PNG")


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


def render_html(rows, info, *, project_name="", app="", m=1, group_names=None, image_names=None) -> str:
    """The gallery page. ``rows``: dicts with id, group, score, probability, predicted (in display order)."""
    classes = list(info.get("class_names", []))
    binary = len(classes) == 2
    prob_label = "P(" + classes[1] + ")" if binary else "max-class prob."
    legend = "".join(f"<span>{i} = {_esc(c)}</span>" for i, c in enumerate(classes))
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
            f'<img src="{_esc(quote(img))}" alt="{m} patches of candidate {_esc(r["id"])}">'
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
        f"<p>ordered by score (most worthy first); each row of images is one candidate's {m} patches</p></header>\n"
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
    if ids.size:
        bags = store.read(ids)
        for i, bag in zip(ids.tolist(), bags):
            write_montage(folder / PATCHES / f"{i}.png", bag)
    page = render_html(rows, info, project_name=project_name, app=store.app, m=store.m, group_names=group_names)
    write_text_atomic(folder / "gallery.html", page)
    return folder / "gallery.html"
