"""Small RGB pictures of images and plots for the table windows (numpy/PIL only).

Every function returns an ``(h, w, 3)`` uint8 array, which the table window
turns into a Tk photo image; images are shown as stored, row 0 at the top, as
Scipion's other viewers show them.
"""

import numpy as np
from matplotlib import colormaps
from PIL import Image

GAP = 3  #: white pixels between the pictures of one row


def _resize(rgb, size):
    """Resize an RGB array to ``size`` = (width, height)."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


def grayThumb(image, size=64):
    """Gray picture of a 2D image, contrast from its 1st to 99th percentile."""
    img = np.asarray(image, dtype=np.float64)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(img, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    gray = (255 * scaled).astype(np.uint8)
    return _resize(np.repeat(gray[..., None], 3, axis=2), (size, size))


def signedThumb(image, size=64):
    """Red (positive) / blue (negative) picture of a signed image, white at 0."""
    img = np.nan_to_num(np.asarray(image, dtype=np.float64))
    v = float(np.percentile(np.abs(img), 99)) or 1.0
    rgba = colormaps["RdBu_r"](np.clip(0.5 + 0.5 * img / v, 0, 1))
    return _resize((255 * rgba[..., :3]).astype(np.uint8), (size, size))


def strip(pictures):
    """Pictures of equal height side by side with white gaps."""
    pictures = [p for p in pictures if p is not None]
    if not pictures:
        return None
    h = max(p.shape[0] for p in pictures)
    parts = []
    for i, p in enumerate(pictures):
        if i:
            parts.append(np.full((h, GAP, 3), 255, np.uint8))
        pad = np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)
        parts.append(np.concatenate([p, pad]))
    return np.concatenate(parts, axis=1)


def pngThumb(path, height=96):
    """Picture of a PNG (or other PIL-readable) file scaled to ``height`` px."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        width = max(1, round(im.width * height / im.height))
        return np.asarray(im.resize((width, height), Image.BILINEAR))


def trajectoryThumb(ref, sec, size=96, colors=((31, 119, 180), (255, 127, 14))):
    """Both trajectories ``(F, 2)`` (px, already superposed) drawn on one square picture.

    Reference in blue, secondary in orange (the colours of the trajectory plot),
    a dot on the first frame, y up; both share one scale so their sizes compare.
    """
    from PIL import ImageDraw

    pts = [np.asarray(t, dtype=np.float64) for t in (ref, sec)]
    allp = np.concatenate(pts)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    span = float(max(hi - lo)) or 1.0
    margin = 6
    scale = (size - 2 * margin) / span
    centre = (lo + hi) / 2
    im = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(190, 190, 190))
    for t, color, width in zip(pts, colors, (4, 2)):  # the reference wider: both show
        xy = [(size / 2 + (x - centre[0]) * scale, size / 2 - (y - centre[1]) * scale)
              for x, y in t]
        draw.line(xy, fill=color, width=width)
        x0, y0 = xy[0]
        draw.ellipse([x0 - 3, y0 - 3, x0 + 3, y0 + 3], fill=color, outline=(0, 0, 0))
    return np.asarray(im)
