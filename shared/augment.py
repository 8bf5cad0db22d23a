"""Data augmentation written out once, framework-free (augment_impl=shared): both frameworks train on
the same pixels, so paired statistics and lockstep keep working. Each image's random parameters are
a pure function of (seed, epoch, image index): drawn for the whole training set per (seed, epoch),
then picked by index, whatever batches, process or framework asks for them.

On the raw images (0-255, before scaling), per image, in this order:
  flip       mirror left-right with probability 1/2
  vflip      mirror top-bottom with probability 1/2 (shoes and bags upside down)
  rotate     by an angle uniform in [-rotate_degrees, +rotate_degrees], about the image centre
  translate  by a shift uniform in [-translate_fraction, +translate_fraction] x 28 pixels, per axis
Rotation and translation are one affine map, sampled with bilinear interpolation; pixels that come
from outside the image are 0 (the black background). Written out in numpy, float64.
"""

from __future__ import annotations

import numpy as np

from shared.data import SIDE  # the images are SIDE x SIDE

NAMES = ("flip", "vflip", "rotate", "translate")
CENTRE = (SIDE - 1) / 2


def names(config) -> list[str]:
    return [] if config.augment == "none" else config.augment.split("+")


def parameters(config, epoch: int, n: int = 60000) -> dict:
    """Every image's parameters for one epoch, for the whole training set (index i: image i). All are
    drawn whichever augmentations are on, so turning one on does not change the others' draws."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, epoch, 0xA06])))
    return {
        "flip": rng.random(n) < 0.5,
        "vflip": rng.random(n) < 0.5,
        "angle": rng.uniform(-config.rotate_degrees, config.rotate_degrees, n),
        "shift": rng.uniform(-config.translate_fraction, config.translate_fraction, (n, 2)) * SIDE,
    }


def native_seed(config, epoch: int) -> int:
    """augment_impl=native: the seed each library's own random augmentation draws epoch `epoch` from
    (a pure function of (seed, epoch): a resumed run redraws the same pixels; the libraries' draws
    differ from each other and from the shared ones)."""
    return int(np.random.SeedSequence([config.seed, epoch, 0xA07]).generate_state(1)[0] >> 1)


def epoch_images_for(impl, images: np.ndarray, config, epoch: int) -> np.ndarray:
    """The training images epoch `epoch` trains on: the shared augmentation, or the implementation's
    own library (`impl.augment`, twins in pytorch_impl/keras_impl train.py) with its defaults."""
    if config.augment_impl == "native":
        return impl.augment(
            images, names(config), config.rotate_degrees, config.translate_fraction, native_seed(config, epoch)
        )
    return epoch_images(images, config, epoch)


def apply(images: np.ndarray, index: np.ndarray, config, epoch: int, drawn: dict | None = None) -> np.ndarray:
    """The augmented images [k, 28, 28] (float64, 0-255) of training images `index` (their raw pixels
    `images`, in the same order) in epoch `epoch`; `drawn`: that epoch's parameters(), when the caller
    has them already."""
    on = names(config)
    p = {k: v[index] for k, v in (drawn or parameters(config, epoch)).items()}
    x = images.astype(np.float64)
    if "flip" in on:
        x = np.where(p["flip"][:, None, None], x[:, :, ::-1], x)
    if "vflip" in on:
        x = np.where(p["vflip"][:, None, None], x[:, ::-1, :], x)
    if "rotate" in on or "translate" in on:
        angle = np.deg2rad(p["angle"]) if "rotate" in on else np.zeros(len(x))
        shift = p["shift"] if "translate" in on else np.zeros((len(x), 2))
        x = affine(x, angle, shift)
    return x


def affine(x: np.ndarray, angle: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Rotate each image by `angle` (radians, counter-clockwise as displayed) about the centre, then
    shift it by (rows, columns): each output pixel samples the input at the inverse map, bilinearly;
    outside the image counts as 0."""
    r, c = np.meshgrid(np.arange(SIDE, dtype=np.float64), np.arange(SIDE, dtype=np.float64), indexing="ij")
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dr, dc = r - CENTRE - shift[:, 0, None, None], c - CENTRE - shift[:, 1, None, None]
    # the inverse rotation of the output offset (rows grow downwards, so counter-clockwise on screen
    # takes a pixel right of the centre to above it)
    src_r, src_c = CENTRE + cos * dr + sin * dc, CENTRE - sin * dr + cos * dc
    r0, c0 = np.floor(src_r), np.floor(src_c)
    fr, fc = src_r - r0, src_c - c0
    # a frame of 2 zero pixels: a source point's four neighbours are all inside it, or (points further
    # out, clipped to the frame) all zeros
    w = SIDE + 4
    flat = np.pad(x, ((0, 0), (2, 2), (2, 2))).reshape(-1)
    at = (
        np.arange(len(x))[:, None, None] * w * w
        + (np.clip(r0, -2, SIDE).astype(np.int64) + 2) * w
        + np.clip(c0, -2, SIDE).astype(np.int64)
        + 2
    )
    out = (1 - fr) * ((1 - fc) * flat[at] + fc * flat[at + 1]) + fr * ((1 - fc) * flat[at + w] + fc * flat[at + w + 1])
    return np.minimum(out, 255.0)  # the weights' rounding can add 1 ulp above 255


def epoch_images(images: np.ndarray, config, epoch: int, chunk: int = 2000) -> np.ndarray:
    """The whole training set as epoch `epoch` sees it, in chunks (small temporaries: faster)."""
    out, drawn = np.empty(images.shape, np.float64), parameters(config, epoch)  # drawn once, not per chunk
    for s in range(0, len(images), chunk):
        idx = np.arange(s, min(s + chunk, len(images)))
        out[idx] = apply(images[idx], idx, config, epoch, drawn)
    return out
