"""DAVIS 2017 natural videos as hexagonal stimulus (MODEL.md section 3).

grey = 0.299R + 0.587G + 0.114B; centre crop of 60 % of the width (full height); hexal value = mean
of a 13x13 px box at hexal centre y = 13(u + v/2), x = 13v around the crop centre; 8 augmentations
(optional horizontal flip x 4 rotations by 90 degrees); train/test split by video, every 5th sorted
video is test (80/20); one frame per ODE step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from simulator.errors import SimulatorError
from simulator.streams import BufferedStream

BOX = 13
CROP_FRACTION = 0.6
N_AUGMENT = 8
TEST_EVERY = 5


def resolve_davis_root(davis_root: str | None) -> Path:
    """``davis_root`` or $DAVIS_ROOT, checked to contain JPEGImages/480p/<video>/*.jpg."""
    root = davis_root or os.environ.get("DAVIS_ROOT")
    if not root:
        raise SimulatorError("simulation.davis_root: stimulus 'davis' needs davis_root or the DAVIS_ROOT env var")
    frames_dir = Path(root).expanduser() / "JPEGImages" / "480p"
    if not frames_dir.is_dir():
        raise SimulatorError(f"simulation.davis_root: {frames_dir} does not exist (expected DAVIS JPEGImages/480p)")
    return Path(root).expanduser()


def split_videos(root: Path) -> dict[str, list[str]]:
    """Sorted video names split by video: every TEST_EVERY-th is test."""
    videos = sorted(p.name for p in (root / "JPEGImages" / "480p").iterdir() if any(p.glob("*.jpg")))
    if len(videos) < 2:
        raise SimulatorError(f"simulation.davis_root: {root} needs at least 2 videos with .jpg frames")
    return split_names(videos)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float64 in [0, 1]."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def centre_crop(img: np.ndarray) -> np.ndarray:
    """Keep the central CROP_FRACTION of the width, full height."""
    w = img.shape[1]
    keep = round(w * CROP_FRACTION)
    start = (w - keep) // 2
    return img[:, start : start + keep]


def augment(img: np.ndarray, k: int) -> np.ndarray:
    """Augmentation k in 0..7: flip if k >= 4, then rotate by 90 degrees (k % 4) times."""
    return np.rot90(img[:, ::-1] if k >= 4 else img, k % 4)


def integral_image(img: np.ndarray) -> np.ndarray:
    """(H + 1, W + 1) summed-area table of ``img`` (float64), so any box sum is four look-ups."""
    h, w = img.shape
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = img.astype(np.float64).cumsum(0).cumsum(1)
    return integral


def box_bounds(shape: tuple[int, int], cy: np.ndarray, cx: np.ndarray, box: np.ndarray | int) -> tuple[np.ndarray, ...]:
    """Pixel bounds (y0, y1, x0, x1), half-open and clipped to an image of ``shape``, of ``box`` x ``box`` boxes
    centred at (cy, cx) (any broadcastable shapes)."""
    h, w = shape
    y0 = np.clip(np.round(cy - box / 2).astype(int), 0, h)
    x0 = np.clip(np.round(cx - box / 2).astype(int), 0, w)
    return y0, np.clip(y0 + box, 0, h), x0, np.clip(x0 + box, 0, w)


def bounded_means(integral: np.ndarray, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Mean pixel value inside each box of ``box_bounds``; an empty box (wholly outside) reads 0."""
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return total / np.maximum((y1 - y0) * (x1 - x0), 1)


def box_means(integral: np.ndarray, cy: np.ndarray, cx: np.ndarray, box: np.ndarray | int) -> np.ndarray:
    """Mean of the ``box`` x ``box`` pixel box centred at each (cy, cx), clipped at the image border."""
    return bounded_means(integral, *box_bounds((integral.shape[0] - 1, integral.shape[1] - 1), cy, cx, box))


def hexal_offsets(columns: np.ndarray) -> np.ndarray:
    """(C, 2) pixel offsets (dy, dx) of the hexal centres from the view centre at scale 1: 13(u + v/2), 13v."""
    u, v = columns[:, 0].astype(np.float64), columns[:, 1].astype(np.float64)
    return BOX * np.stack([u + v / 2.0, v], axis=1)


def hexal_values(img: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Mean of a BOX x BOX pixel box at each hexal centre (boxes clipped at the image border)."""
    h, w = img.shape
    off = hexal_offsets(columns)
    return box_means(integral_image(img), h / 2 + off[:, 0], w / 2 + off[:, 1], BOX)


def split_names(names: list[str]) -> dict[str, list[str]]:
    """Sorted ``names`` split 80/20: every TEST_EVERY-th is test (the last one when there are fewer)."""
    names = sorted(names)
    test = names[TEST_EVERY - 1 :: TEST_EVERY] or names[-1:]
    return {"train": [n for n in names if n not in test], "test": test}


def load_video(folder: Path, columns: np.ndarray) -> np.ndarray:
    """(8, T, C) hexal movies of one video folder, one per augmentation."""
    from PIL import Image

    out = []
    for jpg in sorted(folder.glob("*.jpg")):
        with Image.open(jpg) as im:
            grey = centre_crop(to_grey(np.asarray(im.convert("RGB"))))
        out.append([hexal_values(augment(grey, k), columns) for k in range(N_AUGMENT)])
    return np.asarray(out, dtype=np.float32).transpose(1, 0, 2)


class DavisStream(BufferedStream):
    """Cycles over (video, augmentation) of one split in a seeded order (train) or in order (test)."""

    def __init__(self, root: Path, columns: np.ndarray, seed: np.random.SeedSequence, split: str) -> None:
        super().__init__()
        self.root, self.columns, self.split = root, columns, split
        self.videos = split_videos(root)[split]
        self.rng = np.random.default_rng(seed)
        self._cache: dict[str, np.ndarray] = {}
        self._queue: list[tuple[str, int]] = []

    def describe(self) -> dict:
        return {"kind": "davis", "root": str(self.root), "split": self.split, "videos": self.videos}

    def _next_sequence(self) -> np.ndarray:
        if not self._queue:
            pairs = [(v, k) for v in self.videos for k in range(N_AUGMENT)]
            order = self.rng.permutation(len(pairs)) if self.split == "train" else range(len(pairs))
            self._queue = [pairs[i] for i in order]
        video, k = self._queue.pop(0)
        if video not in self._cache:
            self._cache[video] = load_video(self.root / "JPEGImages" / "480p" / video, self.columns)
        return self._cache[video][k]
