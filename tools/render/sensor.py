"""From linear radiance to the 8-bit image a camera writes: lens vignetting, optical or motion blur, exposure,
Poisson-Gaussian sensor noise, white balance, gamma encoding, quantisation and optional JPEG compression.

The order follows the physics of a real camera: vignetting and blur act on the light before it reaches the sensor;
the sensor counts photo-electrons (shot noise: Poisson with mean signal * full_well, so the noise grows with the
square root of the signal) and adds read noise (Gaussian, in electrons); the signal saturates at the full well;
the image processor then applies white-balance gains (which scale the noise with the channel), the gamma curve
and the 8-bit quantisation, and possibly JPEG. Vignetting is v = 1 - s + s cos^4(theta) with theta the angle of
the pixel's ray from the optical axis (natural cos^4 falloff, strength s). None of these moves image content
(the blur kernels are centred), so the geometric ground truth is untouched.

Not modelled: lens distortion, chromatic aberration, rolling shutter, Bayer demosaicing, tone mapping beyond a
gamma, hot pixels. ``gain_gamma_noise`` is the simpler photometric change of the legacy ``rendered`` set.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Sensor:
    """Per-image capture settings. ``exposure`` maps radiance to signal (1 = full well); ``white_balance`` are RGB
    gains; ``vignetting`` the cos^4 strength in [0, 1]; ``full_well`` / ``read_noise`` in electrons; ``blur`` is
    None, ("defocus", sigma_px) or ("motion", length_px, angle_deg); ``jpeg_quality`` None or 1..100."""

    exposure: float = 1.0
    white_balance: tuple = (1.0, 1.0, 1.0)
    vignetting: float = 0.0
    full_well: float = 4000.0
    read_noise: float = 3.0
    gamma: float = 1 / 2.2
    blur: tuple | None = None
    jpeg_quality: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["white_balance"] = list(self.white_balance)
        d["blur"] = list(self.blur) if self.blur else None
        return d


def vignetting_gain(K: np.ndarray, width: int, height: int, strength: float) -> np.ndarray:
    """1 - s + s cos^4(theta) per pixel (H x W float32)."""
    vs, us = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = (us - K[0, 2]) / K[0, 0], (vs - K[1, 2]) / K[1, 1]
    cos4 = 1.0 / (1.0 + x * x + y * y) ** 2
    return (1 - strength + strength * cos4).astype(np.float32)


def blur_kernel(blur: tuple) -> np.ndarray:
    """Normalised, centred blur kernel: Gaussian (defocus) or a line segment splatted bilinearly (linear motion)."""
    if blur[0] == "defocus":
        sigma = float(blur[1])
        r = max(1, int(math.ceil(3 * sigma)))
        g = cv2.getGaussianKernel(2 * r + 1, sigma)
        return (g @ g.T).astype(np.float32)
    if blur[0] == "motion":
        length, angle = float(blur[1]), math.radians(float(blur[2]))
        r = int(math.ceil(length / 2)) + 1
        n = max(2, int(math.ceil(8 * length)))
        s = (np.arange(n) + 0.5) / n - 0.5  # points along the segment, symmetric about its centre
        x, y = r + s * length * math.cos(angle), r + s * length * math.sin(angle)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0
        k = np.zeros((2 * r + 1, 2 * r + 1), np.float64)
        for dy, wy in ((0, 1 - fy), (1, fy)):  # bilinear splat: the kernel's centroid is exactly the centre
            for dx, wx in ((0, 1 - fx), (1, fx)):
                np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
        return (k / k.sum()).astype(np.float32)
    raise ValueError(f"unknown blur {blur!r}")


def capture(radiance: np.ndarray, K: np.ndarray, sensor: Sensor, rng: np.random.Generator) -> np.ndarray:
    """Linear RGB radiance (H x W x 3 float32) -> 8-bit RGB image (H x W x 3 uint8)."""
    h, w = radiance.shape[:2]
    img = radiance * vignetting_gain(K, w, h, sensor.vignetting)[..., None]
    if sensor.blur is not None:
        img = cv2.filter2D(img, -1, blur_kernel(sensor.blur), borderType=cv2.BORDER_REFLECT)
    electrons = np.clip(img * sensor.exposure, 0, None) * sensor.full_well
    signal = rng.poisson(electrons).astype(np.float32) + rng.normal(scale=sensor.read_noise, size=img.shape)
    signal = np.clip(signal / sensor.full_well, 0, 1)  # saturation at the full well
    signal = np.clip(signal * np.asarray(sensor.white_balance, np.float32), 0, 1)
    out = np.round(255 * np.power(signal, sensor.gamma)).astype(np.uint8)
    if sensor.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(sensor.jpeg_quality)])
        assert ok
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def gain_gamma_noise(img: np.ndarray, rng: np.random.Generator, gain: float, gamma: float,
                     sigma: float) -> np.ndarray:
    """The legacy photometric change: gain * img^gamma * 255 + Gaussian noise (sigma grey levels), to uint8."""
    out = gain * np.power(np.clip(img, 0, 1), gamma) * 255.0
    out = out + rng.normal(scale=sigma, size=out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
