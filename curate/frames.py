"""Pick the best frame of an animation by content, not blindly frame 0.

Each frame is scored on a small thumbnail: blank frames (almost no contrast) are
skipped; the rest score `sharpness * (1 + colourfulness / COLOUR_SCALE)`, where
sharpness is the mean absolute Laplacian of the grey image and colourfulness is
Hasler and Suesstrunk's metric. The earliest frame with the highest score wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMB = 128
COLOUR_SCALE = 32.0


@dataclass(frozen=True)
class FrameScore:
    index: int
    sharpness: float
    colourfulness: float
    blank: bool

    @property
    def score(self) -> float:
        return -1.0 if self.blank else self.sharpness * (1.0 + self.colourfulness / COLOUR_SCALE)


def on_background(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB view of a frame, transparent parts composited on `background`."""
    if im.mode == "RGB":
        return im
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def score_frame(rgb: Image.Image, index: int, blank_std: float) -> FrameScore:
    thumb = rgb.copy()
    thumb.thumbnail((THUMB, THUMB))
    a = np.asarray(thumb, dtype=np.float32)
    grey = a.mean(axis=2)
    if grey.std() < blank_std or min(grey.shape) < 3:
        return FrameScore(index, 0.0, 0.0, True)
    lap = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
           - grey[1:-1, :-2] - grey[1:-1, 2:])
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    colour = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    return FrameScore(index, float(np.abs(lap).mean()), colour, False)


def frame_indices(n_frames: int, max_frames: int) -> list[int]:
    """All frames, or `max_frames` evenly spaced ones (always including frame 0)."""
    if n_frames <= max_frames:
        return list(range(n_frames))
    return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, max_frames)})


def best_frame(im: Image.Image, *, background: tuple[int, int, int], max_frames: int = 64,
               blank_std: float = 3.0) -> tuple[int, Image.Image, list[FrameScore], str | None]:
    """(index, RGB frame, scores, problem) of the best frame of `im` (an opened animation).

    Frames that fail to decode end the search; `problem` then says from which frame.
    """
    n = int(getattr(im, "n_frames", 1))
    scores: list[FrameScore] = []
    best: tuple[float, int, Image.Image] | None = None
    problem = None
    for i in frame_indices(n, max_frames):
        try:
            im.seek(i)
            frame = on_background(im, background)
        except (OSError, EOFError, ValueError, SyntaxError) as exc:
            problem = f"frames from {i} on fail to decode ({exc})"
            break
        s = score_frame(frame, i, blank_std)
        scores.append(s)
        if best is None or s.score > best[0]:
            best = (s.score, i, frame.copy())
    if best is None:
        raise OSError(problem or "no frame decodes")
    return best[1], best[2], scores, problem
