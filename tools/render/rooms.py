"""Scene builders: the single room of the legacy ``rendered`` set, and furnished rooms built from short recipes.

A furnished room is a box (floor at y = 0, ceiling at y = -height since y points down; x in [0, width], z in
[0, depth]) whose walls are either plain paint (``textures.plain``: the low-texture case) or material scans (brick,
text pages...) laid as a mosaic of mirrored / turned copies (``textures.mosaic``: an exactly repeating tile would
give matchers whole families of false but consistent matches), with photos hung on them as posters (separate
rectangles 2 mm in front of the wall that share its plane id, so a wall with its posters counts as one plane), a
floor material, a plain ceiling, and furniture made of boxes (cabinets, crates, benches, a bed against the walls or
free-standing, tables with four legs). Every random choice comes from a generator seeded by (seed, room index), so
a recipe and a seed give the same room.

Why recipes and not random rooms: the evaluation wants rooms that look like offices, galleries or store rooms, each
with a known share of plain paint, and rooms must not change when an unrelated sampler changes. Not here: cameras
and view sampling (the eval set builder does that), lighting (``shading``), animation.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import textures
from .scene import Box, Rect, Scene

POSTER_OFFSET = 0.002  # posters hang 2 mm in front of their wall
PHOTOS = ("starry_night.jpg", "baboon.jpg", "graf1.png", "graf3.png", "building.jpg", "home.jpg", "fruits.jpg",
          "messi5.jpg", "butterfly.jpg", "aero1.jpg", "leuvenA.jpg", "HappyFish.jpg", "orange.jpg",
          "squirrel_cls.jpg", "smarties.png", "sudoku.png", "board.jpg", "stuff.jpg", "skimage:astronaut",
          "skimage:coffee", "skimage:chelsea", "skimage:rocket", "skimage:camera", "skimage:hubble_deep_field",
          "skimage:immunohistochemistry", "skimage:coins", "skimage:moon", "skimage:clock", "skimage:page")


def rendered_scene() -> list:
    """The room of the legacy ``rendered`` set (world = OpenCV-like axes: x right, y down, z forward; floor at
    y = +1.3): textured walls, floor and ceiling, a box, cards and a leaning poster."""
    fl, ce = 1.3, -1.5       # floor and ceiling heights (y down)
    xl, xr = -3.0, 3.0       # side walls
    zb, zf = 7.0, -2.0       # back and front walls
    box = []
    # a box on the floor: 0.8 x 0.7 x 0.8 m at x in [0.6, 1.4], z in [3.2, 4.0]
    bx0, bx1, by0, by1, bz0, bz1 = 0.6, 1.4, fl - 0.7, fl, 3.2, 4.0
    box += [Rect([bx0, by0, bz0], [bx1 - bx0, 0, 0], [0, by1 - by0, 0], "skimage:coffee", texels_per_m=500),  # front
            Rect([bx0, by0, bz1], [0, 0, bz0 - bz1], [0, by1 - by0, 0], "skimage:chelsea", texels_per_m=500),  # left
            Rect([bx0, by0, bz1], [bx1 - bx0, 0, 0], [0, 0, bz0 - bz1], "fruits.jpg", texels_per_m=500)]  # top
    return [
        Rect([xl, ce, zb], [xr - xl, 0, 0], [0, fl - ce, 0], "starry_night.jpg", texels_per_m=250),         # back
        Rect([xl, fl, zf], [xr - xl, 0, 0], [0, 0, zb - zf], "skimage:gravel", rep=(3, 4), texels_per_m=300),  # floor
        Rect([xl, ce, zf], [xr - xl, 0, 0], [0, 0, zb - zf], "skimage:brick", rep=(3, 4), texels_per_m=250),   # ceiling
        Rect([xl, ce, zf], [0, 0, zb - zf], [0, fl - ce, 0], "building.jpg", rep=(2, 1), texels_per_m=250),    # left
        Rect([xr, ce, zb], [0, 0, zf - zb], [0, fl - ce, 0], "home.jpg", rep=(2, 1), texels_per_m=250),        # right
        Rect([xl, ce, zf], [0, fl - ce, 0], [xr - xl, 0, 0], "baboon.jpg", texels_per_m=150),                 # front
        # a standing card and a leaning poster in front
        Rect([-1.6, -0.4, 3.0], [0.9 * math.cos(0.5), 0, 0.9 * math.sin(0.5)], [0, 1.2, 0], "skimage:astronaut",
             texels_per_m=500),
        Rect([-0.5, -0.9, 5.2], [1.4, 0, -0.3], [0, 1.0, 0.2], "graf1.png", texels_per_m=400),
        Rect([1.2, -1.1, 2.4], [0.5, 0, 0.1], [0, 0.8, 0], "skimage:rocket", texels_per_m=600),
    ] + box


# ------------------------------------------------------------------------------------------------------------------
# furnished rooms
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Material:
    """A surface material: plain paint of ``albedo`` (``scans`` empty) or material scans tinted by ``albedo`` laid
    as a ``mosaic`` x ``mosaic`` mosaic (``textures.mosaic``: cells mirrored when ``flips``, turned when ``turns``),
    ``tile`` metres per cell; ``stretch`` (> 1) stretches the scans along x into streaks (wood grain); every scan
    is first turned by ``quarter_turns`` x 90 deg."""

    albedo: tuple
    scans: tuple = ()
    tile: float = 1.0
    contrast: float = 1.0
    stretch: float = 1.0
    quarter_turns: int = 0
    mosaic: int = 3
    flips: bool = True
    turns: bool = False

    @property
    def plain(self) -> bool:
        return not self.scans

    @property
    def period(self) -> float:
        """Metres after which the texture repeats."""
        return 2.0 if self.plain else self.tile * self.mosaic

    def image(self, rng: np.random.Generator) -> np.ndarray:
        if self.plain:
            return textures.plain(self.albedo, rng)
        cells = []
        for name in self.scans:
            img = np.rot90(textures.material(name, self.albedo, self.contrast), self.quarter_turns)
            if self.stretch != 1.0:
                h, w = img.shape[:2]
                img = cv2.resize(img[:, : max(8, int(w / self.stretch))], (w, h), interpolation=cv2.INTER_CUBIC)
            cells.append(np.clip(img, 0, 1))
        return textures.mosaic(cells, rng, self.mosaic, self.turns, self.flips)


@dataclass(frozen=True)
class Recipe:
    """A room: ``size`` (width x, depth z, height) in metres; ``walls`` materials in the order south (z = 0),
    east (x = width), north (z = depth), west (x = 0); ``posters`` per wall (count) and their width range;
    ``furniture``: (kind, placement) with kind in cabinet / crate / table / bench and placement a wall name or
    "free"."""

    name: str
    size: tuple
    walls: tuple
    floor: Material
    ceiling: Material
    posters: tuple
    poster_width: tuple
    furniture: tuple


WOOD = Material((0.55, 0.38, 0.24), ("skimage:grass",), tile=0.8, contrast=0.5, stretch=25)
CARDBOARD = Material((0.62, 0.48, 0.32), ("skimage:gravel",), tile=1.0, contrast=0.25, turns=True)
WHITE_CEILING = Material((0.86, 0.86, 0.84))
OFF_WHITE, GALLERY_WHITE, PALE_BLUE = Material((0.80, 0.78, 0.72)), Material((0.88, 0.87, 0.85)), Material(
    (0.74, 0.80, 0.86))
RED_BRICK = Material((0.62, 0.36, 0.28), ("skimage:brick",), tile=1.2, quarter_turns=1)
PAINTED_BRICK = Material((0.85, 0.83, 0.80), ("skimage:brick",), tile=1.0, contrast=0.5, quarter_turns=1)
GREY_BRICK = Material((0.55, 0.55, 0.56), ("skimage:brick",), tile=1.2, quarter_turns=1)
NOTICE_BOARD = Material((0.90, 0.88, 0.82), ("skimage:page", "skimage:text", "sudoku.png", "imageTextN.png"),
                        tile=0.5, mosaic=4, flips=False)
CARPET = Material((0.42, 0.42, 0.48), ("skimage:gravel",), tile=0.7, contrast=0.9, turns=True)
RUG = Material((0.70, 0.62, 0.50), ("skimage:grass",), tile=0.6, contrast=0.6, turns=True)
PAVERS = Material((0.50, 0.42, 0.36), ("skimage:brick",), tile=1.0, contrast=0.8)
CONCRETE = Material((0.50, 0.50, 0.50), ("skimage:gravel",), tile=1.0, turns=True)
ROUGH_CONCRETE = Material((0.45, 0.44, 0.42), ("skimage:gravel",), tile=1.2, contrast=1.2, turns=True)

RECIPES = (
    Recipe("office", (4.2, 5.0, 2.6), (OFF_WHITE,) * 4, CARPET, WHITE_CEILING, (1, 1, 1, 0), (0.5, 0.9),
           (("table", "west"), ("cabinet", "north"), ("crate", "east"))),
    Recipe("gallery", (8.0, 12.0, 3.2), (GALLERY_WHITE,) * 4, WOOD, WHITE_CEILING, (3, 4, 3, 4), (0.8, 1.6),
           (("bench", "free"), ("bench", "free"), ("crate", "free"), ("crate", "free"))),
    Recipe("loft", (6.0, 8.0, 3.0), (OFF_WHITE, OFF_WHITE, RED_BRICK, RED_BRICK), PAVERS, WHITE_CEILING,
           (3, 3, 2, 2), (0.6, 1.2), (("table", "free"), ("crate", "free"), ("crate", "free"), ("crate", "north"),
                                      ("crate", "east"), ("cabinet", "east"))),
    Recipe("bedroom", (3.0, 4.0, 2.4), (PALE_BLUE,) * 4, RUG, WHITE_CEILING, (2, 2, 1, 1), (0.4, 0.8),
           (("bed", "west"), ("cabinet", "east"), ("crate", "south"))),
    Recipe("classroom", (5.0, 7.0, 2.8), (OFF_WHITE, PAINTED_BRICK, NOTICE_BOARD, OFF_WHITE), CONCRETE,
           WHITE_CEILING, (3, 1, 2, 3), (0.6, 1.2),
           (("table", "free"), ("table", "free"), ("cabinet", "west"), ("crate", "free"), ("crate", "south"))),
    Recipe("storage", (7.0, 9.0, 3.0), (GREY_BRICK, GREY_BRICK, GREY_BRICK, OFF_WHITE), ROUGH_CONCRETE,
           WHITE_CEILING, (2, 2, 1, 3), (0.6, 1.0),
           (("crate", "free"), ("crate", "free"), ("crate", "free"), ("crate", "south"), ("crate", "east"),
            ("cabinet", "north"), ("table", "free"))),
)


@dataclass
class Wall:
    """A wall's geometry: origin at its ceiling-level start, unit direction ``along`` it, inward unit normal."""

    name: str
    origin: np.ndarray
    along: np.ndarray
    normal: np.ndarray
    length: float
    plane: int
    plain: bool


@dataclass
class Room:
    name: str
    size: tuple
    scene: Scene
    walls: dict = field(default_factory=dict)
    floor_plane: int = -1

    def free(self, X: np.ndarray, margin: float = 0.3) -> bool:
        """Whether the point X is inside the room and outside every box, with ``margin`` metres to spare."""
        w, d, h = self.size
        x, y, z = X
        if not (margin <= x <= w - margin and margin <= z <= d - margin and -h + margin <= y <= -margin):
            return False
        return not any(b.contains(X, margin)[0] for b in self.scene.boxes)


def _walls(size) -> list:
    """(name, origin at ceiling level, along, inward normal, length) of the four walls."""
    w, d, h = size
    return [("south", np.array([0.0, -h, 0.0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), w),
            ("east", np.array([w, -h, 0.0]), np.array([0, 0, 1.0]), np.array([-1.0, 0, 0]), d),
            ("north", np.array([w, -h, d]), np.array([-1.0, 0, 0]), np.array([0, 0, -1.0]), w),
            ("west", np.array([0.0, -h, d]), np.array([0, 0, -1.0]), np.array([1.0, 0, 0]), d)]


def _posters(wall: Wall, height: float, count: int, width_range, photos, rng) -> list:
    """``count`` photos (drawn from the iterator ``photos``) at random non-overlapping places on the wall, centres
    1.1-1.9 m above the floor."""
    out, taken = [], []
    name = next(photos)
    for _ in range(count * 20):
        if len(out) == count:
            break
        pw = float(rng.uniform(*width_range))
        ph = pw / textures.aspect(name)
        cy = float(rng.uniform(1.1, 1.9))
        if ph > 2 * min(cy - 0.3, height - 0.2 - cy):
            continue
        s = float(rng.uniform(0.3 + pw / 2, wall.length - 0.3 - pw / 2)) if wall.length > pw + 0.6 else None
        if s is None or any(abs(s - s2) < (pw + w2) / 2 + 0.25 for s2, w2 in taken):
            continue
        taken.append((s, pw))
        top_left = (wall.origin + (s - pw / 2) * wall.along + np.array([0, height - cy - ph / 2, 0])
                    + POSTER_OFFSET * wall.normal)
        out.append(Rect(top_left, pw * wall.along, [0, ph, 0], name, texels_per_m=550, plane=wall.plane,
                        kind="poster"))
        name = next(photos)
    return out


def _furniture_box(kind: str, photos, rng) -> list:
    """Boxes of one piece of furniture in its own frame (centre of the footprint at the origin, on the floor, front
    towards -z): list of (centre, size, textures) and the footprint (width, depth). Printed faces take the next
    photo of the iterator ``photos``."""
    photo = functools.partial(next, photos)
    if kind == "cabinet":
        w, d, h = rng.uniform(0.7, 1.4), rng.uniform(0.4, 0.6), rng.uniform(0.9, 2.0)
        wood = WOOD.image(rng)
        tex = {f: wood for f in ("+x", "-x", "-y", "+z")}
        tex["-z"] = photo() if rng.random() < 0.5 else wood
        return [((0, -h / 2, 0), (w, h, d), tex)], (w, d)
    if kind == "crate":
        w, d, h = rng.uniform(0.35, 0.8), rng.uniform(0.35, 0.8), rng.uniform(0.3, 0.8)
        card = CARDBOARD.image(rng)
        tex = {"+x": card, "-x": card, "+z": card, "-y": photo(), "-z": photo()}
        return [((0, -h / 2, 0), (w, h, d), tex)], (w, d)
    if kind == "bench":
        w, d, h = rng.uniform(1.2, 1.8), rng.uniform(0.4, 0.5), rng.uniform(0.42, 0.48)
        wood = WOOD.image(rng)
        return [((0, -h / 2, 0), (w, h, d), {f: wood for f in ("+x", "-x", "-y", "+z", "-z")})], (w, d)
    if kind == "bed":
        w, d, h = rng.uniform(1.2, 1.5), rng.uniform(1.9, 2.1), rng.uniform(0.45, 0.6)
        cover = Material(tuple(rng.uniform(0.4, 0.9, 3)), ("skimage:grass",), contrast=0.5, turns=True).image(rng)
        return [((0, -h / 2, 0), (w, h, d), {f: cover for f in ("+x", "-x", "-y", "+z", "-z")})], (w, d)
    if kind == "table":
        w, d, h, top = rng.uniform(1.0, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.72, 0.78), 0.04
        wood = WOOD.image(rng) if rng.random() < 0.5 else "stuff.jpg"
        leg = textures.plain(tuple(rng.uniform(0.1, 0.3, 3)), rng)
        boxes = [((0, -h + top / 2, 0), (w, top, d), {f: wood for f in Box.FACES})]
        for sx in (-1, 1):
            for sz in (-1, 1):
                boxes.append(((sx * (w / 2 - 0.06), -(h - top) / 2, sz * (d / 2 - 0.06)), (0.05, h - top, 0.05),
                              {f: leg for f in ("+x", "-x", "+z", "-z")}))
        return boxes, (w, d)
    raise ValueError(kind)


def _place(kind: str, placement: str, room_size, walls: dict, taken: list, photos, rng):
    """The boxes of one piece placed in the room (against a wall or free-standing, clear of the pieces in
    ``taken``: (x, z, radius)); None when no free spot was found."""
    W, D, _ = room_size
    boxes, (w, d) = _furniture_box(kind, photos, rng)
    r = math.hypot(w, d) / 2
    for _ in range(200):
        if placement == "free":
            x, z, yaw = rng.uniform(1.0 + r, W - 1.0 - r), rng.uniform(1.0 + r, D - 1.0 - r), rng.uniform(0, math.pi)
        else:
            wall = walls[placement]
            if wall.length < w + 0.6:
                return None
            s = rng.uniform(0.3 + w / 2, wall.length - 0.3 - w / 2)
            p = wall.origin + s * wall.along + (d / 2 + 0.01) * wall.normal
            x, z = p[0], p[2]
            yaw = math.atan2(-wall.normal[0], -wall.normal[2])  # front (-z of the piece) faces the room
        if (r < min(x, z, W - x, D - z) or placement != "free") and all(
                math.hypot(x - x2, z - z2) > r + r2 + 0.3 for x2, z2, r2 in taken):
            taken.append((x, z, r))
            c, s_ = math.cos(yaw), math.sin(yaw)
            out = []
            for centre, size, tex in boxes:
                cx, cy, cz = centre
                world = (x + c * cx + s_ * cz, cy, z - s_ * cx + c * cz)
                out.append(Box(world, size, yaw, tex, texels_per_m=400))
            return out
    return None


@functools.lru_cache(maxsize=None)
def build_room(index: int, seed: int) -> Room:
    """Room ``RECIPES[index]`` with its random details drawn from ``seed``."""
    rec = RECIPES[index]
    rng = np.random.default_rng([seed, index])
    W, D, H = rec.size
    surfaces, walls = [], {}
    floor = Rect([0, 0, 0], [W, 0, 0], [0, 0, D], rec.floor.image(rng), rep=(W / rec.floor.period,
                 D / rec.floor.period), texels_per_m=400, plane=0, kind="floor", plain=rec.floor.plain)
    ceiling = Rect([0, -H, 0], [W, 0, 0], [0, 0, D], rec.ceiling.image(rng), rep=(W / 2, D / 2), texels_per_m=64,
                   plane=1, kind="ceiling", plain=rec.ceiling.plain)
    surfaces += [floor, ceiling]
    for k, ((name, o, along, normal, length), mat) in enumerate(zip(_walls(rec.size), rec.walls)):
        wall = Wall(name, o, along, normal, length, plane=2 + k, plain=mat.plain)
        walls[name] = wall
        surfaces.append(Rect(o, length * along, [0, H, 0], mat.image(rng), rep=(length / mat.period, H / mat.period),
                             texels_per_m=64 if mat.plain else 450, plane=wall.plane, kind="wall", plain=mat.plain))
    photos = itertools.cycle([str(p) for p in rng.permutation(PHOTOS)])  # repeats only once all are used
    for wall, count in zip(walls.values(), rec.posters):
        surfaces += _posters(wall, H, count, rec.poster_width, photos, rng)
    taken, boxes = [], []
    for kind, placement in rec.furniture:
        boxes += _place(kind, placement, rec.size, walls, taken, photos, rng) or []
    return Room(rec.name, rec.size, Scene(surfaces, boxes), walls, floor_plane=0)
