"""Smooth camera paths for rendered image sequences: a walker carrying a camera through a room.

A path is a list of keys (time, floor position x and z, heading ``yaw``) joined per channel by quintic Hermite
pieces: position, velocity and acceleration are continuous everywhere (C2). Velocities at the keys are the
Catmull-Rom estimates (p[i+1] - p[i-1]) / (t[i+1] - t[i-1]) and accelerations the same difference of those
velocities, except that a key whose value equals its neighbour's in that channel gets zero velocity and
acceleration: two equal keys in a row then give a piece that is *exactly* constant (the piece is evaluated as
p0 + (p1 - p0) h(tau) + ..., so no rounding moves it). That is how stops (all channels held) and turns in place
(position held, yaw moving) are written, and why the walker starts and ends at rest.

On top of the floor path, the walk's arc length s(t) (integrated at 1 kHz) drives a small head bob (vertical,
``bob`` metres, one cycle per ``bob_period`` metres walked), pitch nod and roll sway; being functions of s they
stop exactly when the walker stops. The camera looks along (sin yaw, 0, cos yaw) in the world (x right, y down,
z forward; y = 0 is the floor, so the eye height h is y = -h), pitched down by ``pitch_deg``.

``whole_strides`` rounds the stride length so that the walk is a whole number of strides (a closed loop then
ends in exactly the pose it started in). ``Plan`` writes keys from motion primitives (walk through way points at a speed, turn in place, stop) and records
the time span of each labelled segment. Not here: rooms, lights, rendering, collision checks (the sequence
builders check the path against the room).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Key:
    t: float
    x: float
    z: float
    yaw: float  # rad; forward = (sin yaw, 0, cos yaw)


def _key_derivatives(ts: np.ndarray, p: np.ndarray):
    """Velocity and acceleration of one channel at its keys (Catmull-Rom estimates; 0 at held keys and the ends)."""
    n = len(p)
    v, a = np.zeros(n), np.zeros(n)
    held = np.zeros(n, bool)
    held[0] = held[-1] = True
    held[1:] |= p[1:] == p[:-1]
    held[:-1] |= p[:-1] == p[1:]
    for i in range(1, n - 1):
        if not held[i]:
            v[i] = (p[i + 1] - p[i - 1]) / (ts[i + 1] - ts[i - 1])
    for i in range(1, n - 1):
        if not held[i]:
            a[i] = (v[i + 1] - v[i - 1]) / (ts[i + 1] - ts[i - 1])
    return v, a


def quintic(p0, v0, a0, p1, v1, a1, T, tau):
    """Quintic Hermite piece on [0, T] at normalised times tau in [0, 1]: value, first and second time derivative.
    Written as p0 + increments so that p0 == p1 with zero derivatives gives exactly p0."""
    V0, V1, A0, A1, D = v0 * T, v1 * T, a0 * T * T, a1 * T * T, p1 - p0
    c3 = 10 * D - 6 * V0 - 4 * V1 - 1.5 * A0 + 0.5 * A1
    c4 = -15 * D + 8 * V0 + 7 * V1 + 1.5 * A0 - A1
    c5 = 6 * D - 3 * V0 - 3 * V1 - 0.5 * A0 + 0.5 * A1
    t2, t3 = tau * tau, tau * tau * tau
    p = p0 + (V0 * tau + 0.5 * A0 * t2 + c3 * t3 + c4 * t3 * tau + c5 * t3 * t2)
    dp = (V0 + A0 * tau + 3 * c3 * t2 + 4 * c4 * t3 + 5 * c5 * t3 * tau) / T
    ddp = (A0 + 6 * c3 * tau + 12 * c4 * t2 + 20 * c5 * t3) / (T * T)
    return p, dp, ddp


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class CameraPath:
    """Camera pose over time from keys (see the module docstring). ``pose(t)`` -> (R_world_from_cam, centre)."""

    def __init__(self, keys: list, eye_height: float = 1.5, pitch_deg: float = 8.0, bob: float = 0.012,
                 bob_period: float = 0.9, nod_deg: float = 0.4, sway_deg: float = 0.5, whole_strides: bool = False):
        self.keys = list(keys)
        ts = np.array([k.t for k in self.keys], np.float64)
        if np.any(np.diff(ts) <= 0):
            raise ValueError("key times must increase")
        self.ts = ts
        self.channels = []
        for name in ("x", "z", "yaw"):
            p = np.array([getattr(k, name) for k in self.keys], np.float64)
            v, a = _key_derivatives(ts, p)
            self.channels.append((p, v, a))
        self.eye_height, self.pitch = eye_height, math.radians(pitch_deg)
        self.bob, self.bob_period = bob, bob_period
        self.nod, self.sway = math.radians(nod_deg), math.radians(sway_deg)
        self.duration = float(ts[-1])
        # 1 kHz grid laid per piece (the keys are grid points), so that a stopped piece has exactly constant s
        self._tt = np.unique(np.concatenate([np.linspace(a, b, max(2, int(round((b - a) * 1000)) + 1))
                                             for a, b in zip(ts[:-1], ts[1:])]))
        speed = np.hypot(*self.floor_velocity(self._tt))
        self._s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(self._tt))])
        if whole_strides and self.length > 0:  # a closed loop ends with the bob, nod and sway it started with
            self.bob_period = self.length / max(1, round(self.length / self.bob_period))

    def _channel(self, j: int, t):
        t = np.clip(np.asarray(t, np.float64), 0.0, self.duration)
        p, v, a = self.channels[j]
        i = np.clip(np.searchsorted(self.ts, t, side="right") - 1, 0, len(self.ts) - 2)
        T = self.ts[i + 1] - self.ts[i]
        tau = (t - self.ts[i]) / T
        return quintic(p[i], v[i], a[i], p[i + 1], v[i + 1], a[i + 1], T, tau)

    def floor(self, t):
        """(t, x, z, vx, vz) on the floor."""
        x, vx, _ = self._channel(0, t)
        z, vz, _ = self._channel(1, t)
        return t, x, z, vx, vz

    def floor_velocity(self, t):
        return self._channel(0, t)[1], self._channel(1, t)[1]

    def yaw(self, t):
        return self._channel(2, t)[0]

    def yaw_rate(self, t):
        return self._channel(2, t)[1]

    def arc_length(self, t):
        return np.interp(np.asarray(t, np.float64), self._tt, self._s)

    @property
    def length(self) -> float:
        """Floor path length (m)."""
        return float(self._s[-1])

    def pose(self, t: float):
        """World-from-camera rotation (columns: camera x, y, z in the world) and camera centre at time t."""
        x = float(self._channel(0, t)[0])
        z = float(self._channel(1, t)[0])
        yaw = float(self._channel(2, t)[0])
        s = float(self.arc_length(t))
        ph = 2 * math.pi * s / self.bob_period
        y = -(self.eye_height + self.bob * math.sin(2 * ph))  # two steps (two bobs) per stride
        pitch = self.pitch + self.nod * math.sin(2 * ph + 0.7)
        roll = self.sway * math.sin(ph)  # sways once per stride (left, right foot)
        R_wc = rot_y(yaw) @ rot_x(-pitch) @ rot_z(roll)
        return R_wc, np.array([x, y, z])


@dataclass
class Plan:
    """Keys from motion primitives. Angles in degrees here (keys store radians); positions in metres."""

    x: float
    z: float
    yaw_deg: float
    keys: list = field(default_factory=list)
    segments: list = field(default_factory=list)  # (kind, t0, t1)

    def __post_init__(self):
        self.keys = [Key(0.0, self.x, self.z, math.radians(self.yaw_deg))]

    @property
    def t(self) -> float:
        return self.keys[-1].t

    @property
    def last(self) -> Key:
        return self.keys[-1]

    def _add(self, dt: float, x: float, z: float, yaw: float) -> None:
        self.keys.append(Key(self.t + dt, x, z, yaw))

    def label(self, kind: str, t0: float, t1: float | None = None) -> None:
        self.segments.append((kind, t0, self.t if t1 is None else t1))

    def stop(self, duration: float, kind: str | None = "stop") -> "Plan":
        t0, k = self.t, self.last
        self._add(duration, k.x, k.z, k.yaw)
        if kind:
            self.label(kind, t0)
        return self

    def turn(self, deg: float, duration: float, kind: str | None = "turn_in_place") -> "Plan":
        """Turn in place by ``deg`` over ``duration`` s (peak rate 1.875 deg / duration: a minimum-jerk profile)."""
        t0, k = self.t, self.last
        self._add(duration, k.x, k.z, k.yaw + math.radians(deg))
        if kind:
            self.label(kind, t0)
        return self

    def walk(self, points: list, speed: float, look_deg=None, kind: str | None = "forward",
             ramp: float = 0.4, end_yaw_deg: float | None = None) -> "Plan":
        """Walk from rest through the way points (x, z) to rest at ``speed`` m/s, facing the direction of travel
        (+ ``look_deg`` per way point, looking aside). The walker accelerates over the first ``ramp`` metres and
        brakes over the last (a key is put there; those legs take 2 d / speed); a walk too short for that is one
        minimum-jerk leg of 1.875 d / speed (peak speed = ``speed``). ``end_yaw_deg``: the heading at the end
        (the nearest turn of it to the direction of travel) instead of the direction of the last leg."""
        t0, k = self.t, self.last
        pts = [np.array([k.x, k.z])] + [np.array(p, np.float64) for p in points]
        look = [0.0] * len(pts) if look_deg is None else [0.0] + [float(v) for v in look_deg]
        total = sum(float(np.linalg.norm(b - a)) for a, b in zip(pts[:-1], pts[1:]))
        short = total < 3 * ramp
        if not short:  # keys at the ends of the acceleration and braking ramps
            d0 = pts[1] - pts[0]
            if np.linalg.norm(d0) > 1.5 * ramp:
                pts.insert(1, pts[0] + ramp * d0 / np.linalg.norm(d0))
                look.insert(1, look[1])
            d1 = pts[-1] - pts[-2]
            if np.linalg.norm(d1) > 1.5 * ramp:
                pts.insert(len(pts) - 1, pts[-1] - ramp * d1 / np.linalg.norm(d1))
                look.insert(len(look) - 1, look[-1])
        n = len(pts) - 1
        yaw_prev = k.yaw
        for i in range(1, n + 1):
            a, b = pts[i - 1], pts[i]
            d = float(np.linalg.norm(b - a))
            dt = 1.875 * total / speed if short and n == 1 else (2 * d / speed if i in (1, n) else d / speed)
            tangent = (pts[i + 1] - a) if i < n else (b - a)
            heading = math.atan2(tangent[0], tangent[1]) + math.radians(look[i])
            heading += 2 * math.pi * round((yaw_prev - heading) / (2 * math.pi))  # unwrap next to the last yaw
            if i == n and end_yaw_deg is not None:
                e = math.radians(end_yaw_deg)
                heading = e + 2 * math.pi * round((heading - e) / (2 * math.pi))
            self._add(dt, float(b[0]), float(b[1]), heading)
            yaw_prev = heading
        if kind:
            self.label(kind, t0)
        return self

    def move(self, duration: float, x: float, z: float, yaw_deg_delta: float, kind: str | None = None) -> "Plan":
        """One key: reach (x, z) and turn by ``yaw_deg_delta`` in ``duration`` s (walking while turning)."""
        t0, k = self.t, self.last
        self._add(duration, x, z, k.yaw + math.radians(yaw_deg_delta))
        if kind:
            self.label(kind, t0)
        return self
