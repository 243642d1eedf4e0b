"""The Memory map tab: every document as a strip coloured by retrieval, and the chunk keys in two dimensions."""
from __future__ import annotations

from html import escape

import numpy as np

from longmem_core import MemoryBank
from longmem_core.memory.memory_bank import label_of

from .common import SOURCE_COLORS, flat

HEAT_STOPS = [(0.0, (191, 219, 254)), (0.25, (253, 186, 116)), (0.6, (234, 88, 12)), (1.0, (127, 29, 29))]
NOT_IN_MEMORY = "#e5e7eb"
STRIP_BINS = 120  # cells per document strip
MAP_POINTS = 1500  # chunks drawn in the projection at most
MAX_STRIPS = 24  # documents drawn as strips at most (the newest; the rest are counted in one line)
TIP_CHARS = 160  # a hover text shows at most this many characters of its chunk (a span can be a whole document)
NAME_CHARS = 80  # a document's name is cut to this many characters
AXIS_TICKS = 10  # page labels (or positions) written under a document's strip at most
# So the map's HTML is bounded whatever a bank says (spans, names, how many sources): about MAX_STRIPS *
# STRIP_BINS * 150 + MAP_POINTS * (TIP_CHARS + NAME_CHARS + 200) bytes, under 1 MB.


def _cut(text: str, limit: int) -> str:
    """``text`` with its whitespace runs made single spaces, at most ``limit`` characters (an ellipsis marks a cut)."""
    text = flat(text[:4 * limit])  # flat never sees more than a few times what is kept
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _heat_color(t: float) -> str:
    t = max(0.0, min(1.0, t))
    for (t0, c0), (t1, c1) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return "#%02x%02x%02x" % tuple(round(a + (b - a) * f) for a, b in zip(c0, c1))
    return "#%02x%02x%02x" % HEAT_STOPS[-1][1]


def memory_map(bank: MemoryBank | None, heat: dict[int, float], last: list[int]) -> str:
    """Every document as a strip of its text (coloured by how much retrieval each region got, grey where
    nothing is in memory, ▼ the latest answer's chunks), then a 2-D projection of the chunk keys."""
    if bank is None or bank.n_chunks == 0:
        return '<div class="lm-empty">Memory is empty: nothing to draw yet.</div>'
    return _strips(bank, heat, last) + _projection(bank, last)


def _strips(bank: MemoryBank, heat: dict[int, float], last: list[int]) -> str:
    ids, src, chars = bank.chunk_ids, bank.chunk_source, bank.chunk_chars
    weights = np.array([heat.get(int(c), 0.0) for c in ids])
    last_set = set(last)
    cells, rows = [], []
    for s, source in enumerate(bank.sources):
        mask = src == s
        if not mask.any():
            continue
        length = max(len(source["text"]), 1)
        bins = np.clip((chars[mask, 0] * STRIP_BINS) // length, 0, STRIP_BINS - 1)
        cell_heat = np.bincount(bins, weights=weights[mask], minlength=STRIP_BINS)
        covered = np.bincount(bins, minlength=STRIP_BINS) > 0
        marks = sorted({int(b) for b, c in zip(bins, ids[mask]) if int(c) in last_set})
        cells.append((s, _cut(source["name"], NAME_CHARS), int(mask.sum()), cell_heat, covered, marks, length,
                      _axis(source, length)))
    hidden = cells[:-MAX_STRIPS]
    cells = cells[-MAX_STRIPS:]  # the newest documents
    top = max((c[3].max() for c in cells), default=0.0) or 1.0
    width = 1000 / STRIP_BINS
    for s, name, n, cell_heat, covered, marks, length, axis in cells:
        rects = []
        for b in range(STRIP_BINS):
            fill = _heat_color(cell_heat[b] / top) if covered[b] else NOT_IN_MEMORY
            a, z = b * length // STRIP_BINS, (b + 1) * length // STRIP_BINS
            tip = f"characters {a:,}–{z:,}: " + (f"{cell_heat[b]:.2f} of retrieval" if covered[b] else "not in memory")
            rects.append(f'<rect x="{b * width:.2f}" y="10" width="{width + 0.3:.2f}" height="26" fill="{fill}">'
                         f'<title>{escape(tip)}</title></rect>')
        ticks = "".join(f'<path d="M{(b + 0.5) * width:.1f} 8 l-5 -7 h10 z" fill="#111827"/>' for b in marks)
        color = SOURCE_COLORS[s % len(SOURCE_COLORS)]
        rows.append(f'<div class="lm-strip"><div class="lm-strip-name"><span class="lm-dot" style="background:{color}">'
                    f'</span>{escape(name)} <small>{n:,} chunks · {length:,} characters</small></div>'
                    f'<svg viewBox="0 0 1000 38" preserveAspectRatio="none" role="img" '
                    f'aria-label="retrieval heat along {escape(name)}">{"".join(rects)}{ticks}</svg>{axis}</div>')
    gone = [source["name"] for s, source in enumerate(bank.sources) if not source["text"] and not (src == s).any()]
    if gone:  # dropped whole, first in, first out (their text is forgotten with their last chunk)
        rows.insert(0, '<div class="lm-legend lm-dropped">Dropped from memory to make room (first in, first out): '
                       + escape(", ".join(_cut(n, NAME_CHARS) for n in gone)) + ". Grey at the start of a strip: "
                       "the part of a document dropped.</div>")
    if hidden:
        rows.insert(0, f'<div class="lm-legend">{len(hidden):,} older documents with '
                       f'{sum(c[2] for c in hidden):,} chunks in memory are not drawn; the newest {len(cells)} are.</div>')
    legend = ('<div class="lm-legend">Start of each document on the left. <span class="lm-swatch" '
              f'style="background:{_heat_color(0)}"></span> in memory, not retrieved '
              f'<span class="lm-swatch lm-ramp"></span> retrieved more and more often, summed over all questions '
              f'<span class="lm-swatch" style="background:{NOT_IN_MEMORY}"></span> not in memory (dropped or not read) '
              '▼ chunks of the latest answer</div>')
    return '<div class="lm-map"><h4>Where answers looked</h4>' + "".join(rows) + legend + "</div>"


def _axis(source: dict, length: int) -> str:
    """The axis under a document's strip: the printed labels of up to ``AXIS_TICKS`` pages where the document has
    pages (a PDF), else positions in per cent of its characters."""
    pages = source.get("pages")
    if pages:
        step = max(1, -(-len(pages) // AXIS_TICKS))
        marks = [(pages[i], f"p. {_cut(label_of(source, i + 1), 12)}") for i in range(0, len(pages), step)]
    else:
        marks = [(length * k // 4, f"{25 * k}%") for k in range(5)]
    labels = "".join(f'<span style="left:{min(98.0, max(1.0, 100 * at / length)):.1f}%">{escape(text)}</span>'
                     for at, text in marks)
    return f'<div class="lm-axis" aria-label="{"pages" if pages else "position"} along the document">{labels}</div>'


def project_keys(keys: np.ndarray) -> np.ndarray:
    """Chunk keys [G, N, D] -> 2-D coordinates [N, 2] along their two main axes (PCA)."""
    x = np.transpose(keys, (1, 0, 2)).reshape(keys.shape[1], -1).astype(np.float64)  # [N, G*D]
    x = x - x.mean(0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))


def _projection(bank: MemoryBank, last: list[int]) -> str:
    n = bank.n_chunks
    keep = np.unique(np.linspace(0, n - 1, min(n, MAP_POINTS)).astype(int))
    ids = bank.chunk_ids
    last_pos = [int(c - ids[0]) for c in last if 0 <= c - ids[0] < n]
    keep = np.union1d(keep, np.array(last_pos, dtype=int))
    xy = project_keys(bank.chunk_keys()[:, keep])
    lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pos = np.clip((xy - lo) / span, -0.02, 1.02)
    w, h, pad = 1000, 420, 20
    dots, rings = [], []
    last_set = set(last_pos)
    for (px, py), p in zip(pos, keep):
        cx, cy = pad + px * (w - 2 * pad), h - pad - py * (h - 2 * pad)
        s = int(bank.chunk_source[p])
        info = bank.chunk_info(int(ids[p]))
        tip = escape(f"{_cut(info.source, NAME_CHARS)} #{info.chunk_id}: {_cut(info.text, TIP_CHARS)}")
        if p in last_set:
            where = f"p. {info.page_label}" if info.page_label else f"#{info.chunk_id}"
            rings.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" fill="{SOURCE_COLORS[s % len(SOURCE_COLORS)]}" '
                         f'stroke="#111827" stroke-width="2.5"><title>{tip} (latest answer)</title></circle>'
                         f'<text x="{cx + 9:.1f}" y="{cy + 4:.1f}" class="lm-ring-label">{escape(_cut(where, 16))}</text>')
        else:
            dots.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{SOURCE_COLORS[s % len(SOURCE_COLORS)]}" '
                        f'fill-opacity="0.55"><title>{tip}</title></circle>')
    shown = f"{len(keep):,} of {n:,} chunks" if len(keep) < n else f"all {n:,} chunks"
    return ('<div class="lm-map"><h4>Chunk keys in 2-D</h4>'
            f'<svg class="lm-scatter" viewBox="0 0 {w} {h}" role="img" aria-label="projection of chunk keys">'
            f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff" stroke="#e5e7eb"/>{"".join(dots)}{"".join(rings)}</svg>'
            f'<div class="lm-legend">Each dot is one chunk: the mean key of its tokens at the memory layer (what '
            f'retrieval searches), projected on its two main axes; colour = source, ringed = chunks of the latest '
            f'answer; hover for the text. Showing {shown}.</div></div>')
