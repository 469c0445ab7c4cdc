"""Natural photographs moved like a fly's view, as hexagonal stimulus (``simulation.stimulus: natural``).

The photographs ship inside scikit-image's wheel (``skimage/data``) and are read from the package folder with
pillow, never through ``skimage.data``'s fetchers, so no download is ever attempted. They go onto the lattice
by the DAVIS code path (simulator.davis): ``to_grey`` (luminance in [0, 1]), the 8 flip x rot90 augmentations,
13 px box means at the hexal centres (``box_bounds``/``bounded_means`` on ``hexal_offsets``), so the
photoreceptors see the same range and resolution as with DAVIS frames. An augmentation maps each pixel box
exactly onto a box of the unaugmented photo, so one summed-area table per photo serves all 8. Instead of a
video's own motion, a gaze moves over the photo, one sequence of 50-80 frames per (image, augmentation), with
one of three motions:

- drift: a slow pan, velocity = a random mean (1-20 columns/s) plus a smooth (low-pass) random part;
- saccade: slow drift (< 3 columns/s) broken by 1-3 fast jumps of 4-15 columns, each within 3 frames;
- loom: fixation while the zoom grows like an approaching object, scale ~ 1 / (t_c - t), 2-4x in all.

The view bounces off the photo's border (it never leaves the image) and zooms out where the lattice would span
more than 80 % of the photo. Split by image as DAVIS splits by video (every 5th sorted image is test); train
cycles (image, augmentation) in a seeded order, test in order. Each sequence is sampled in one vectorised gather.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulator.davis import (
    BOX,
    N_AUGMENT,
    bounded_means,
    box_bounds,
    hexal_offsets,
    integral_image,
    split_names,
    to_grey,
)
from simulator.errors import SimulatorError
from simulator.streams import BufferedStream

# Photographs of scenes and textures bundled in the scikit-image wheel (checked: no pooch download needed).
# Left out: drawings, text, micrographs, the near-black Hubble field and the low-contrast moon.
IMAGES = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "motorcycle_left.png",
    "rocket.jpg",
)
MOTIONS = ("drift", "saccade", "loom")
MIN_LEN, MAX_LEN = 50, 80
SACCADE_FRAMES = 3
ROOM = 0.8  # the view spans at most 80 % of the photo's shorter side, so the gaze can always move
SCALE_RANGE = (0.8, 1.25)  # zoom of drift and saccade views (1 = DAVIS's 13 px per column)


def image_dir() -> Path:
    """The folder of scikit-image's bundled images; one-line error when scikit-image is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorError("simulation.stimulus: 'natural' needs scikit-image (pip install scikit-image)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_image(name: str) -> np.ndarray:
    """(H, W) float32 luminance in [0, 1] of one bundled image, grey as DAVIS frames."""
    from PIL import Image

    path = image_dir() / name
    if not path.is_file():
        raise SimulatorError(f"simulation.stimulus: 'natural' needs {path}, which this scikit-image does not bundle")
    with Image.open(path) as im:
        return to_grey(np.asarray(im.convert("RGB"))).astype(np.float32)


def split_images() -> dict[str, list[str]]:
    """The bundled images split by image like DAVIS videos (every 5th sorted is test)."""
    return split_names(list(IMAGES))


def augmented_shape(shape: tuple[int, int], k: int) -> tuple[int, int]:
    """Shape of ``simulator.davis.augment(img, k)`` for an image of ``shape``."""
    return (shape[1], shape[0]) if k % 2 else shape


def source_bounds(bounds: tuple[np.ndarray, ...], k: int, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Half-open boxes (y0, y1, x0, x1) in ``augment(img, k)`` -> the same pixels' box in ``img`` of ``shape``.

    ``augment`` flips (k >= 4) then rotates by 90 degrees (k % 4) times; np.rot90 maps A[i, j] = F[j, W_F - 1 - i],
    so each rotation is undone by rows <- columns, columns <- W_F - rows (reversed), and the flip by mirroring x.
    """
    y0, y1, x0, x1 = bounds
    for i in range(k % 4, 0, -1):
        width = shape[1] if (i - 1) % 2 == 0 else shape[0]  # width of the image before the i-th rotation
        y0, y1, x0, x1 = x0, x1, width - y1, width - y0
    if k >= 4:
        x0, x1 = shape[1] - x1, shape[1] - x0
    return y0, y1, x0, x1


def _fold(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect positions into [lo, hi] (a gaze that reaches the border bounces back)."""
    span = np.maximum(hi - lo, 0.0)
    m = np.mod(p - lo, np.where(span > 0, 2 * span, 1.0))
    return np.where(span > 0, lo + np.where(m > span, 2 * span - m, m), (lo + hi) / 2)


class NaturalStream(BufferedStream):
    """Seeded gaze sequences over scikit-image's bundled photographs of one split."""

    def __init__(self, columns: np.ndarray, seed: np.random.SeedSequence, delta_t: float, split: str) -> None:
        super().__init__()
        self.split, self.dt = split, delta_t
        self.images = split_images()[split]
        self.offsets = hexal_offsets(columns)  # (C, 2) px at scale 1
        # half-size of the lattice's sampled area (centres plus half a box), px at scale 1
        self.reach = np.abs(self.offsets).max(0) + BOX / 2
        self.rng = np.random.default_rng(seed)
        # one summed-area table per photo (float64, about 2 MB each), loaded here so a missing file fails early
        self._integral = {name: integral_image(load_image(name)) for name in self.images}
        self._queue: list[tuple[str, int]] = []

    def describe(self) -> dict:
        import importlib.metadata

        return {
            "kind": "natural",
            "source": f"scikit-image {importlib.metadata.version('scikit-image')} bundled images",
            "split": self.split,
            "images": self.images,
            "motions": list(MOTIONS),
            "length": [MIN_LEN, MAX_LEN],
        }

    def _next_sequence(self) -> np.ndarray:
        if not self._queue:
            pairs = [(name, k) for name in self.images for k in range(N_AUGMENT)]
            order = self.rng.permutation(len(pairs)) if self.split == "train" else range(len(pairs))
            self._queue = [pairs[i] for i in order]
        name, k = self._queue.pop(0)
        n = int(self.rng.integers(MIN_LEN, MAX_LEN + 1))
        motion = MOTIONS[int(self.rng.integers(len(MOTIONS)))]
        cy, cx, scale = self.gaze(motion, n, augmented_shape(self._shape(name), k))
        return self.sample(name, k, cy, cx, scale)

    def _shape(self, name: str) -> tuple[int, int]:
        h, w = self._integral[name].shape
        return h - 1, w - 1

    def sample(self, name: str, k: int, cy: np.ndarray, cx: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """(n, C) box means of augmentation ``k`` of photo ``name`` for gaze centres (n,) px and scales (n,),
        in the augmented image's pixels: all frames and columns in one gather."""
        box = np.maximum(np.round(BOX * scale), 1).astype(int)[:, None]
        ys = cy[:, None] + scale[:, None] * self.offsets[None, :, 0]
        xs = cx[:, None] + scale[:, None] * self.offsets[None, :, 1]
        shape = self._shape(name)
        bounds = box_bounds(augmented_shape(shape, k), ys, xs, box)
        return bounded_means(self._integral[name], *source_bounds(bounds, k, shape))

    def gaze(self, motion: str, n: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gaze centre (cy, cx) in px and zoom scale, each (n,), of one ``motion`` over an image of ``shape``."""
        rng, dt = self.rng, self.dt
        size = np.asarray(shape, dtype=np.float64)
        fit = ROOM * float((size / 2 / self.reach).min())  # largest scale whose view lies inside with room to move
        per_col = BOX  # px per column at scale 1
        t = np.arange(n) * dt
        if motion == "loom":
            end = min(rng.uniform(1.0, 2.0), fit)
            factor = rng.uniform(2.0, 4.0)
            onset = int(rng.integers(0, n // 2))
            t_loom = np.clip(t - onset * dt, 0.0, None)
            duration = (n - 1 - onset) * dt
            t_c = duration * factor / (factor - 1)  # time to contact: scale reaches end at the last frame
            scale = end / factor * t_c / (t_c - t_loom)
            velocity = self._drift_velocity(n, rng.uniform(0.0, 2.0), 1.0)
        else:
            scale = np.full(n, min(np.exp(rng.uniform(*np.log(SCALE_RANGE))), fit))
            if motion == "drift":
                velocity = self._drift_velocity(n, rng.uniform(1.0, 20.0), 5.0)
            else:
                velocity = self._drift_velocity(n, rng.uniform(0.0, 3.0), 1.0)
        step = velocity * dt * per_col * scale[:, None]  # (n, 2) px per frame
        if motion == "saccade":
            step += self._saccade_steps(n) * per_col * scale[:, None]
        step[0] = 0.0
        half = self.reach[None, :] * scale[:, None]  # (n, 2) half-extent of the view
        lo, hi = half, size[None, :] - half
        start = lo[0] + rng.random(2) * np.maximum(hi[0] - lo[0], 0.0)
        centre = _fold(start + np.cumsum(step, axis=0), lo, hi)
        return centre[:, 0], centre[:, 1], scale

    def _drift_velocity(self, n: int, speed: float, jitter: float) -> np.ndarray:
        """(n, 2) columns/s: a constant ``speed`` in a random direction plus low-pass noise of std ``jitter``."""
        from scipy.signal import lfilter

        rng = self.rng
        theta = rng.uniform(0, 2 * np.pi)
        a = np.exp(-self.dt / 0.3)  # 0.3 s correlation time
        noise = lfilter([np.sqrt(1 - a**2)], [1.0, -a], rng.normal(size=(n, 2)), axis=0)
        return speed * np.array([np.sin(theta), np.cos(theta)]) + jitter * noise

    def _saccade_steps(self, n: int) -> np.ndarray:
        """(n, 2) columns per frame: 1-3 jumps of 4-15 columns, each spread over SACCADE_FRAMES frames."""
        rng = self.rng
        steps = np.zeros((n, 2))
        count = int(rng.integers(1, 4))
        slots = rng.choice(np.arange(1, n - SACCADE_FRAMES, SACCADE_FRAMES + 2), size=count, replace=False)
        amp = rng.uniform(4.0, 15.0, count)
        theta = rng.uniform(0, 2 * np.pi, count)
        jump = amp[:, None] * np.stack([np.sin(theta), np.cos(theta)], axis=1)  # (count, 2)
        profile = np.sin(np.pi * (np.arange(SACCADE_FRAMES) + 0.5) / SACCADE_FRAMES)
        profile /= profile.sum()  # bell-shaped speed, sums to 1
        idx = slots[:, None] + np.arange(SACCADE_FRAMES)[None, :]  # (count, F)
        np.add.at(steps, idx, jump[:, None, :] * profile[None, :, None])
        return steps
