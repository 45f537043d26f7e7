"""The labeling page of a query round: ``gallery.html`` (or ``gallery-NAME.html`` per annotator) + one patch
montage PNG per candidate.

The page works offline straight from the file system, with no server and no network request (a
Content-Security-Policy forbids any): per candidate, one button per class with the keyboard shortcuts 1..K,
"unsure" (u) and "skip" (s), and an optional note (n); a progress counter; every patch of a candidate's bag can
be enlarged (click it, or Enter; arrows step through the bag). The page keeps its state in the browser's
``localStorage`` (under a key unique to the project, round and annotator), so a reload loses nothing.
**Download labels** saves ``round-NNN[-NAME]-labels.csv`` with the columns ``id,label,note,annotator`` that
``aift teach`` accepts unchanged: the label is the class index, unsure and skipped rows have an empty label (they
stay in the pool).

A 2.5-D store (store attributes ``patch_kind = "2.5d"`` and ``channels`` = the three plane names, as written by
``aift-data import-volumes`` and the simulated PE app) shows each patch's three planes side by side as grayscale
tiles, one row per patch, under labelled column headings (axial | coronal | sagittal); enlarging a patch shows
its three planes. Every string taken from user data (ids, group names, class names, app, project and annotator
names) is HTML-escaped (and reaches the script only through escaped ``data-`` attributes, shown with
``textContent``); image paths are URL-quoted as well.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from pathlib import Path
from urllib.parse import quote

import numpy as np

from aift_tf.annotation import layout
from aift_tf.annotation.layout import PATCHES
from aift_tf.files import atomic_path, round_name, write_text_atomic

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


def montage_boxes(m: int, h: int, w: int, planes=None) -> list:
    """Pixel boxes ``(x, y, width, height)`` of the m patches inside a montage made by :func:`montage`
    (or :func:`montage_planes` when ``planes`` are given: a patch is a row of its three planes).

    Example:
    >>> montage_boxes(2, 32, 32)
    [(0, 0, 96, 96), (98, 0, 96, 96)]
    """
    scale = max(1, math.ceil(MIN_TILE / max(1, min(h, w))))
    th, tw, pad = h * scale, w * scale, 2
    if planes is None:
        return [(j * (tw + pad), 0, tw, th) for j in range(m)]
    head, left = 14, 22
    return [(left, head + j * (th + pad), 3 * (tw + pad) - pad, th) for j in range(m)]


def page_token(*parts) -> str:
    """A short, stable key for a page's saved state (project path, round, creation time, annotator).

    Example:
    >>> page_token("/data/pe-project", "round-001", "2025-01-01T12:00:00+00:00", "alice")
    '3f0c...'
    """
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:20]


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
.toolbar{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin-top:8px;font-size:14px}
.toolbar input{font:inherit;padding:3px 6px;border-radius:4px;border:1px solid #8891a5;width:12em}
.toolbar input[readonly]{background:#2b3243;color:#fff;border-color:#2b3243}
.progress{font-weight:600}
#download{font:inherit;font-weight:600;background:#2e7d32;color:#fff;border:0;border-radius:5px;padding:6px 14px;cursor:pointer}
#saved{color:#c9cfdb;font-size:12px}
.warn{color:#ffb4a9}
.card{width:min(100%,440px);outline:none}
.card.current{border-color:#1f6feb;box-shadow:0 0 0 3px rgba(31,111,235,.35)}
.card img.bag{cursor:zoom-in}
.buttons{display:flex;flex-wrap:wrap;gap:6px;margin-top:8px}
.buttons button{font:inherit;font-size:13px;padding:4px 9px;border-radius:4px;border:1px solid #b8bfcc;background:#f7f8fa;cursor:pointer}
.buttons button.on{background:#1f6feb;color:#fff;border-color:#1f6feb}
.buttons button.unsure.on{background:#b7791f;border-color:#b7791f}
.buttons button.skip.on{background:#6b7385;border-color:#6b7385}
.note{display:block;width:100%;box-sizing:border-box;margin-top:6px;font:inherit;font-size:13px;border:1px solid #dde1e8;border-radius:4px;padding:3px 6px;resize:vertical}
.status{float:right;margin-right:10px;font-size:12px;font-weight:600;color:#1f6feb}
.card.done{background:#f3f8ff}
.votes{margin-top:6px;font-size:13px;color:#8a1c1c}
.zoom{position:fixed;inset:0;background:rgba(10,12,18,.85);display:flex;align-items:center;justify-content:center;z-index:10}
.zoom[hidden]{display:none}
.zoom canvas{image-rendering:pixelated;background:#000;max-width:92vw;max-height:80vh}
.zoom p{color:#fff;text-align:center;font-size:14px}
"""


_CSP = ("default-src 'none'; img-src 'self' file: data: blob:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'none'; form-action 'none'; base-uri 'none'")

# The page's script: static text (no user data); it reads the page's escaped data- attributes and writes only
# through textContent / classList. No network request: the CSV is a Blob saved through an <a download> link.
_JS = r"""
(function () {
  "use strict";
  var body = document.body, D = body.dataset;
  var classes = JSON.parse(D.classes), K = classes.length;
  var KEY = "aift-labels:" + D.token;
  var NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N}_.-]{0,63}$/u;
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var ann = document.getElementById("annotator");
  var state = {annotator: D.annotator || "", items: {}};
  var storageOk = true;
  try {
    var raw = window.localStorage.getItem(KEY);
    if (raw) { var got = JSON.parse(raw); if (got && typeof got.items === "object") state = got; }
  } catch (e) { storageOk = false; }
  if (D.annotator) state.annotator = D.annotator;
  ann.value = state.annotator || "";
  var cur = 0, zoomAt = null;

  function save() {
    try { window.localStorage.setItem(KEY, JSON.stringify(state)); }
    catch (e) { storageOk = false; }
    document.getElementById("saved").textContent = storageOk ?
      "saved in this browser" : "this browser does not keep the labels: download them before you close the page";
  }
  function item(card) { return state.items[card.dataset.id]; }
  function render(card) {
    var it = item(card), st = card.querySelector(".status");
    card.querySelectorAll(".buttons button").forEach(function (b) {
      var on = !!it && ((b.classList.contains("lab") && it.s === "label" && String(it.label) === b.dataset.label) ||
                        (b.classList.contains("unsure") && it.s === "unsure") ||
                        (b.classList.contains("skip") && it.s === "skip"));
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    st.textContent = !it || !it.s ? "" : it.s === "label" ? classes[it.label] : it.s;
    card.classList.toggle("done", !!it && !!it.s);
    var note = card.querySelector(".note");
    if (document.activeElement !== note) note.value = (it && it.note) || "";
  }
  function progress() {
    var n = {label: 0, unsure: 0, skip: 0};
    cards.forEach(function (c) { var it = item(c); if (it && it.s) n[it.s] += 1; });
    var left = cards.length - n.label - n.unsure - n.skip;
    document.getElementById("progress").textContent = n.label + " of " + cards.length + " labeled \u00b7 " +
      n.unsure + " unsure \u00b7 " + n.skip + " skipped \u00b7 " + left + " left";
  }
  function setCurrent(k, scroll) {
    if (k < 0 || k >= cards.length) return;
    cards[cur].classList.remove("current");
    cur = k;
    cards[cur].classList.add("current");
    if (scroll !== false) cards[cur].scrollIntoView({block: "nearest"});
  }
  function mark(card, s, label) {
    var id = card.dataset.id, it = state.items[id] || {};
    if (s === null) { delete it.s; delete it.label; }
    else { it.s = s; if (s === "label") it.label = label; else delete it.label; }
    state.items[id] = it;
    save(); render(card); progress();
  }
  function advance() {
    for (var k = cur + 1; k < cards.length; k++) { var it = item(cards[k]); if (!it || !it.s) { setCurrent(k); return; } }
    setCurrent(Math.min(cur + 1, cards.length - 1));
  }
  function boxes(img) {
    return img.dataset.boxes.split(";").map(function (b) { return b.split(",").map(Number); });
  }
  function openZoom(card, j) {
    var img = card.querySelector("img.bag"), bx = boxes(img);
    j = (j + bx.length) % bx.length;
    var b = bx[j], cv = document.getElementById("zcanvas");
    var f = Math.max(1, Math.floor(Math.min(window.innerWidth * 0.9 / b[2], window.innerHeight * 0.78 / b[3])));
    cv.width = b[2] * f; cv.height = b[3] * f;
    var cx = cv.getContext("2d");
    cx.imageSmoothingEnabled = false;
    cx.drawImage(img, b[0], b[1], b[2], b[3], 0, 0, cv.width, cv.height);
    document.getElementById("zcap").textContent = "id " + card.dataset.id + " \u00b7 patch " + (j + 1) + " of " +
      bx.length + " \u00b7 \u2190/\u2192 previous/next patch \u00b7 Esc closes";
    document.getElementById("zoom").hidden = false;
    zoomAt = {card: card, j: j};
  }
  function closeZoom() { document.getElementById("zoom").hidden = true; zoomAt = null; }
  function csvCell(v) {
    v = v == null ? "" : String(v);
    return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function csvText() {
    var who = ann.value.trim(), lines = ["id,label,note,annotator"];
    cards.forEach(function (c) {
      var it = item(c) || {};
      var label = it.s === "label" ? String(it.label) : "";
      lines.push([c.dataset.id, label, it.note || "", who].map(csvCell).join(","));
    });
    return lines.join("\n") + "\n";
  }
  function download() {
    var who = ann.value.trim(), msg = document.getElementById("annmsg");
    if (who && !NAME_RE.test(who)) {
      msg.textContent = "annotator: letters, digits, '.', '_' or '-' only";
      ann.focus();
      return;
    }
    msg.textContent = "";
    var blob = new Blob([csvText()], {type: "text/csv"});
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = D.download;
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    document.getElementById("saved").textContent = "downloaded " + D.download + " at " +
      new Date().toLocaleTimeString() + ": now run " + D.teach.replace("{CSV}", D.download);
  }
  window.aiftLabelsCsv = csvText;  // for people (and tests) who prefer the console

  cards.forEach(function (card, k) {
    render(card);
    card.addEventListener("click", function (ev) {
      setCurrent(k, false);
      var t = ev.target;
      if (t.matches("button.lab")) mark(card, "label", Number(t.dataset.label));
      else if (t.matches("button.unsure")) mark(card, "unsure");
      else if (t.matches("button.skip")) mark(card, "skip");
      else if (t.matches("button.clear")) mark(card, null);
      else if (t.matches("img.bag")) {
        var bx = boxes(t), sx = t.naturalWidth / t.clientWidth, x = ev.offsetX * sx, y = ev.offsetY * sx, j = 0;
        bx.forEach(function (b, i) { if (x >= b[0] && y >= b[1] && x < b[0] + b[2] + 2 && y < b[1] + b[3] + 2) j = i; });
        openZoom(card, j);
      }
    });
    card.querySelector(".note").addEventListener("input", function (ev) {
      var it = state.items[card.dataset.id] || {};
      it.note = ev.target.value.slice(0, 2000);
      state.items[card.dataset.id] = it;
      save();
    });
  });
  ann.addEventListener("input", function () { state.annotator = ann.value.trim(); save(); });
  document.getElementById("download").addEventListener("click", download);
  document.getElementById("zoom").addEventListener("click", closeZoom);
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) {
      if (ev.key === "Escape" || (ev.key === "Enter" && t.tagName === "TEXTAREA" && !ev.shiftKey)) {
        ev.preventDefault(); t.blur();
      }
      return;
    }
    if (zoomAt) {
      if (ev.key === "Escape" || ev.key === "Enter" || ev.key === "z") closeZoom();
      else if (ev.key === "ArrowRight") openZoom(zoomAt.card, zoomAt.j + 1);
      else if (ev.key === "ArrowLeft") openZoom(zoomAt.card, zoomAt.j - 1);
      else return;
      ev.preventDefault();
      return;
    }
    var card = cards[cur], key = ev.key, d = key === "0" ? 10 : parseInt(key, 10);
    if (!isNaN(d) && String(d % 10) === key && d >= 1 && d <= K) { mark(card, "label", d - 1); advance(); }
    else if (key === "u") { mark(card, "unsure"); advance(); }
    else if (key === "s") { mark(card, "skip"); advance(); }
    else if (key === "x" || key === "Delete" || key === "Backspace") mark(card, null);
    else if (key === "n") card.querySelector(".note").focus();
    else if (key === "ArrowRight" || key === "j" || key === "ArrowDown") setCurrent(cur + 1);
    else if (key === "ArrowLeft" || key === "k" || key === "ArrowUp") setCurrent(cur - 1);
    else if (key === "Enter" || key === "z") openZoom(card, 0);
    else return;
    ev.preventDefault();
  });
  if (cards.length) setCurrent(0, false);
  progress();
  save();
})();
"""


def render_html(rows, info, *, project_name="", app="", m=1, group_names=None, image_names=None, planes=None,
                annotator=None, kind="query", token="", download="labels.csv", teach="aift teach PROJECT {CSV}",
                boxes=None) -> str:
    """The labeling page. ``rows``: dicts with id, group, score, probability, predicted (in display order;
    an adjudication row has ``votes`` [(annotator, class name)] and no score); ``planes``: the plane names of a
    2.5-D store (see :func:`store_planes`), else None; ``boxes``: the patches' pixel boxes in a montage
    (:func:`montage_boxes`); ``annotator``: the name the page's labels are given (None: typed on the page);
    ``token``: the key of the page's saved state; ``download``: the downloaded CSV's file name."""
    classes = list(info.get("class_names", []))
    binary = len(classes) == 2
    prob_label = "P(" + classes[1] + ")" if binary else "max-class prob."
    legend = "".join(f"<span>{i + 1} = {_esc(c)}</span>" for i, c in enumerate(classes))
    if planes:
        what = f"each card is one candidate: {m} rows of 2.5-D patches, columns {_esc(' | '.join(planes))}"
        alt = f"{m} patches x planes {' | '.join(planes)} of candidate "
    else:
        what = f"each row of images is one candidate's {m} patches"
        alt = f"{m} patches of candidate "
    boxes_attr = ";".join(",".join(str(int(v)) for v in b) for b in (boxes or [(0, 0, 1, 1)]))
    buttons = "".join(f'<button type="button" class="lab" data-label="{i}" title="key {i + 1 if i < 9 else 0}">'
                      f'{(i + 1) % 10 if i < 10 else ""} · {_esc(c)}</button>' for i, c in enumerate(classes))
    buttons += ('<button type="button" class="unsure" title="key u">u · unsure</button>'
                '<button type="button" class="skip" title="key s">s · skip</button>'
                '<button type="button" class="clear" title="key x">x · clear</button>')
    cards = []
    for rank, r in enumerate(rows, 1):
        gid = r["group"]
        gname = group_names[gid] if isinstance(group_names, (list, tuple)) and 0 <= gid < len(group_names) else (
            group_names.get(str(gid), gid) if isinstance(group_names, dict) else gid)
        img = image_names[rank - 1] if image_names else f"{PATCHES}/{r['id']}.png"
        if r.get("score") is None:  # an adjudication card: the annotators' votes instead of the model's score
            meta = f'<div class="meta"><span>group <b>{_esc(gname)}</b></span></div>'
            votes = " · ".join(f"{_esc(a)}: <b>{_esc(c)}</b>" for a, c in r.get("votes", []))
            meta += f'<div class="votes">votes: {votes}</div>'
        else:
            p = float(r["probability"])
            pred = "" if binary else f"<span>predicted <b>{_esc(r.get('predicted', ''))}</b></span>"
            meta = (f'<div class="meta"><span>group <b>{_esc(gname)}</b></span><span>score <b>{r["score"]:.4f}</b>'
                    f'</span><span>{_esc(prob_label)} <b>{p:.3f}</b></span>{pred}</div>'
                    f'<div class="bar" title="{_esc(prob_label)}"><i style="width:{100 * min(max(p, 0.0), 1.0):.1f}%">'
                    f'</i></div>')
        cards.append(
            f'<div class="card" id="c{_esc(r["id"])}" data-id="{_esc(r["id"])}"><span class="rank">#{rank}</span>'
            f'<span class="status"></span><span class="id">id {_esc(r["id"])}</span>'
            f'<img class="bag" src="{_esc(quote(img))}" alt="{_esc(alt)}{_esc(r["id"])}" data-boxes="{boxes_attr}" '
            f'title="click a patch to enlarge it">'
            f'{meta}<div class="buttons">{buttons}</div>'
            f'<textarea class="note" rows="1" maxlength="2000" placeholder="note (optional; key n)" '
            f'aria-label="note on id {_esc(r["id"])}"></textarea>'
            f"</div>")
    k = info.get("round", 0)
    stem = f"adjudication {k:03d}" if kind == "adjudication" else f"round {k:03d}"
    title = f"{project_name} · {stem}" if project_name else stem
    who = f" · {annotator}" if annotator else ""
    todo = "disagreements to settle" if kind == "adjudication" else "candidates to label"
    ro = " readonly" if annotator else ""
    data = (f'data-classes="{_esc(json.dumps(classes))}" data-token="{_esc(token)}" '
            f'data-download="{_esc(download)}" data-annotator="{_esc(annotator or "")}" data-kind="{_esc(kind)}" '
            f'data-teach="{_esc(teach)}"')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_esc(_CSP)}\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        f"<title>{_esc(title + who)}</title><style>{_CSS}</style></head><body {data}>\n"
        f"<header><h1>{_esc(title)}{_esc(who)}: {len(rows)} {todo}</h1>"
        f"<p>data: {_esc(app)} · model after teach round {_esc(info.get('model_round', ''))}"
        + ("" if kind == "adjudication" else
           f" · strategy {_esc(info.get('strategy', ''))} (ω = {_esc(info.get('omega', ''))})")
        + f" · {_esc(info.get('created', ''))}</p>"
        f"<p>{'sorted by id' if kind == 'adjudication' else 'ordered by score (most worthy first)'}; {what}</p>"
        f'<div class="toolbar"><label>annotator <input id="annotator" type="text" maxlength="64" '
        f'placeholder="your name" value="{_esc(annotator or "")}"{ro}></label><span id="annmsg" class="warn"></span>'
        f'<span id="progress" class="progress">0 of {len(rows)} labeled</span>'
        f'<button id="download" type="button">Download labels</button><span id="saved"></span></div></header>\n'
        f"<div class=\"how\">Label each candidate with its buttons or keys: <code>1</code>…<code>{len(classes)}</code> "
        f"a class, <code>u</code> unsure, <code>s</code> skip, <code>x</code> clear, <code>n</code> a note, "
        f"<code>←</code>/<code>→</code> previous/next, <code>Enter</code> or a click on a patch enlarges it. "
        f"Your labels are kept in this browser (reloading loses nothing). <b>Download labels</b> saves "
        f"<code>{_esc(download)}</code>; then run <code>{_esc(teach.replace('{CSV}', download))}</code> (unsure and "
        f"skipped candidates stay in the pool). Without JavaScript, fill the <code>label</code> column of "
        f"<code>{_esc(layout.queries_name(annotator))}</code> beside this page instead. "
        f"<span class=\"legend\">Classes: {legend}</span></div>\n"
        f"<main>\n" + "\n".join(cards) + "\n</main>\n"
        '<div id="zoom" class="zoom" hidden><div><canvas id="zcanvas" width="1" height="1"></canvas>'
        '<p id="zcap"></p></div></div>\n'
        f"<footer>aift · {_esc(len(rows))} of {_esc(info.get('pool_left', ''))} unlabeled candidates"
        + ("" if kind == "adjudication" else
           f" · probability = {_esc(info.get('probability', ''))} of the mean patch prediction")
        + f"</footer>\n<script>{_JS}</script>\n</body></html>\n"
    )


def write_patches(folder, store, ids) -> None:
    """Write ``folder/patches/<id>.png`` (the candidate's montage) for every id."""
    folder = Path(folder)
    (folder / PATCHES).mkdir(exist_ok=True)
    ids = np.asarray(list(ids), dtype=np.int64)
    planes = store_planes(store)
    if ids.size:
        for i, bag in zip(ids.tolist(), store.read(ids)):
            write_montage(folder / PATCHES / f"{i}.png", bag, planes)


def write_page(path, rows, info, store, *, project, annotator=None, kind="query", download="labels.csv") -> Path:
    """Write one labeling page (``gallery.html`` / ``gallery-NAME.html``) for ``rows`` of a round of
    ``project`` (the project folder; its absolute path keys the page's saved state)."""
    path = Path(path)
    project = Path(project)
    h, w = (int(x) for x in tuple(store.patch_shape)[:2])
    planes = store_planes(store)
    stem = layout.download_stem(download)  # round-001[-alice] (the page may be written in a temporary folder)
    token = page_token(str(project.resolve()), stem, info.get("created", ""), annotator or "")
    page = render_html(rows, info, project_name=project.name, app=store.app, m=store.m,
                       group_names=store.attrs.get("group_names"), planes=planes, annotator=annotator, kind=kind,
                       token=token, download=download, teach=f"aift teach {project} ~/Downloads/{{CSV}}",
                       boxes=montage_boxes(store.m, h, w, planes))
    write_text_atomic(path, page)
    return path


def write_gallery(folder, store, rows, info, *, project_name="", group_names=None) -> Path:
    """Write ``folder/patches/<id>.png`` for every row and ``folder/gallery.html`` (one annotator)."""
    folder = Path(folder)
    write_patches(folder, store, [r["id"] for r in rows])
    return write_page(folder / layout.GALLERY, rows, info, store, project=Path(project_name or folder.name),
                      download=layout.download_name(round_name(info.get("round", 0))))
