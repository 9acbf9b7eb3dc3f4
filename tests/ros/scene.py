"""Renders image sequences with exact ground-truth camera poses from real photographs, for the ROS tests.

The scene is a room of textured planes (back wall, floor, ceiling, side walls), each textured with a real
photo (OpenCV's sample images from apt `opencv-doc`, or $MATCHA_CACHE/data). Each pixel of a camera is
ray-cast into the room and the photo sampled bilinearly there, so the correspondences between two renders
follow a true 3-D scene (not a single plane, which would make the essential matrix ambiguous) and the
relative pose between any two cameras is known exactly.

Conventions: camera optical frame (x right, y down, z forward); a camera pose is (R_wc, c): world-from-camera
rotation and centre. The pose of camera b in camera a's frame is R_ab = R_wa^T R_wb, p_ab = R_wa^T (c_b - c_a).
"""

import glob
import hashlib
import os
import time

import numpy as np
from PIL import Image

W, H = 640, 480
FX = FY = 500.0
CX, CY = (W - 1) / 2.0, (H - 1) / 2.0
K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]])

# (point on plane, normal, in-plane u axis, in-plane v axis, extent in metres along u and v)
PLANES = [
    (np.array([0, 0, 6.0]), np.array([0, 0, -1.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (12.0, 9.0)),
    (np.array([0, 1.5, 0]), np.array([0, -1.0, 0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), (12.0, 12.0)),
    (np.array([0, -1.8, 0]), np.array([0, 1.0, 0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), (12.0, 12.0)),
    (np.array([-2.5, 0, 0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), (12.0, 9.0)),
    (np.array([2.5, 0, 0]), np.array([-1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), (12.0, 9.0)),
    # free-standing panels at intermediate depths (so no single plane dominates the view)
    (np.array([-1.0, 0.3, 3.0]), np.array([0, 0, -1.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (1.4, 1.8)),
    (np.array([1.1, -0.3, 4.0]), np.array([-0.5, 0, -0.866]), np.array([0.866, 0, -0.5]), np.array([0, 1.0, 0]),
     (1.6, 1.6)),
]

PREFERRED = ["graf1.png", "building.jpg", "aero1.jpg", "home.jpg", "fruits.jpg", "baboon.jpg", "lena.jpg",
             "messi5.jpg", "graf3.png", "left01.jpg"]


def photo_dirs():
    cache = os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha"))
    return [os.path.join(cache, "data"), "/usr/share/doc/opencv-doc/examples/data"]


def load_textures(n=len(PLANES)):
    """n real photos as float32 RGB arrays (raises if none are installed)."""
    found = []
    for d in photo_dirs():
        for name in PREFERRED:
            p = os.path.join(d, name)
            if os.path.isfile(p) and name not in [os.path.basename(f) for f in found]:
                found.append(p)
        for p in sorted(glob.glob(os.path.join(d, "*.jpg")) + glob.glob(os.path.join(d, "*.png"))):
            if len(found) >= n:
                break
            if os.path.basename(p) not in [os.path.basename(f) for f in found]:
                found.append(p)
    if not found:
        raise RuntimeError("no real photos found: apt install opencv-doc (or put images in $MATCHA_CACHE/data)")
    out = []
    for i in range(n):
        img = Image.open(found[i % len(found)]).convert("RGB")
        out.append(np.asarray(img, dtype=np.float32))
    return out


def rot(rx, ry, rz):
    """Rotation matrix from x, y, z angles (radians), applied in the order Rz @ Ry @ Rx."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def render(textures, R_wc, c, width=W, height=H, k=K):
    """Renders the room seen by a camera (R_wc, c) as a uint8 RGB array (height × width × 3)."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d_cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    d = d_cam @ R_wc.T
    best_t = np.full(u.shape, np.inf)
    out = np.zeros(u.shape + (3,), np.float32)
    for (p0, n, au, av, (eu, ev)), tex in zip(PLANES, textures):
        denom = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((p0 - c) @ n) / denom
        ok = (t > 1e-6) & (t < best_t) & (np.abs(denom) > 1e-9)
        pts = c + d * t[..., None]
        su = (pts - p0) @ au / eu + 0.5
        sv = (pts - p0) @ av / ev + 0.5
        ok &= (su >= 0) & (su <= 1) & (sv >= 0) & (sv <= 1)
        th, tw = tex.shape[:2]
        x = np.clip(su * (tw - 1), 0, tw - 1.001)
        y = np.clip(sv * (th - 1), 0, th - 1.001)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        s = (tex[y0, x0] * (1 - fx) * (1 - fy) + tex[y0, x0 + 1] * fx * (1 - fy)
             + tex[y0 + 1, x0] * (1 - fx) * fy + tex[y0 + 1, x0 + 1] * fx * fy)
        out[ok] = s[ok]
        best_t[ok] = t[ok]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cached_render(poses, tag):
    """Renders the frames of `poses` (uint8 N×H×W×3), cached in $MATCHA_CACHE/ros-frames by the hash of this
    file, the poses and the photos (rendering takes about a second per frame)."""
    cache = os.path.join(os.environ.get("MATCHA_CACHE", os.path.expanduser("~/.cache/matcha")), "ros-frames")
    h = hashlib.sha256()
    with open(__file__, "rb") as f:
        h.update(f.read())
    for R, c in poses:
        h.update(np.asarray(R, np.float64).tobytes() + np.asarray(c, np.float64).tobytes())
    textures = load_textures()
    for t in textures:
        h.update(hashlib.sha256(t.tobytes()).digest())
    path = os.path.join(cache, f"{tag}-{len(poses)}-{h.hexdigest()[:16]}.npy")
    if os.path.isfile(path):
        return np.load(path)
    t0 = time.time()
    frames = np.stack([render(textures, R, c) for R, c in poses])
    os.makedirs(cache, exist_ok=True)
    np.save(path + ".tmp.npy", frames)
    os.replace(path + ".tmp.npy", path)
    print(f"rendered {len(frames)} frames in {time.time() - t0:.1f} s (cached in {path})", flush=True)
    return frames


def relative(pose_a, pose_b):
    """Pose of camera b in camera a's frame: (R_ab, p_ab)."""
    (Ra, ca), (Rb, cb) = pose_a, pose_b
    return Ra.T @ Rb, Ra.T @ (cb - ca)


def trajectory(n=8):
    """n camera poses moving forward and sideways through the room with a slow turn."""
    poses = []
    for i in range(n):
        s = i / max(n - 1, 1)
        R = rot(0.03 * np.sin(2 * s), 0.12 * s - 0.05, 0.02 * s)
        c = np.array([-0.6 + 1.2 * s, 0.1 * np.sin(3 * s), 0.6 * s])
        poses.append((R, c))
    return poses


def rotation_error_deg(R_est, R_gt):
    c = (np.trace(R_est.T @ R_gt) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def direction_error_deg(t_est, t_gt):
    a = t_est / max(np.linalg.norm(t_est), 1e-12)
    b = t_gt / max(np.linalg.norm(t_gt), 1e-12)
    return float(np.degrees(np.arccos(np.clip(a @ b, -1, 1))))


def quat_to_rot(x, y, z, w):
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


if __name__ == "__main__":
    import sys
    tex = load_textures()
    poses = trajectory(4)
    for i, (R, c) in enumerate(poses):
        Image.fromarray(render(tex, R, c)).save(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", f"frame{i}.png"))
