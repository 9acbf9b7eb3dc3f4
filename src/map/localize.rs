//! Localization of one image in a saved map: retrieval → local matching → PnP → verification.
//!
//! The query's place vector ranks the keyframes ([`super::PlaceIndex`]); the best `candidates` are read
//! from the database and the query's descriptors matched to each one's landmark observations (mutual
//! nearest neighbours, as the odometry does); the landmarks' map positions and the query's pixels give a
//! robust PnP (P3P + LO-RANSAC, [`crate::geometry::estimate_absolute_pose`]). The candidate with most
//! inliers wins, and is accepted only when it passes the geometric verification: at least `min_inliers`
//! inliers, spread over at least `min_spread` of the image (the share of a 4 × 4 grid's cells holding an
//! inlier: a pose held up by one poster corner is not trusted) and a runner-up elsewhere in the map that is
//! clearly weaker (`max_ambiguity`: a second candidate more than 2 m away with nearly as many inliers means
//! two places look alike, and the answer is withheld). A refused frame reports why, so that a wrong place
//! is not published: for a robot a missing fix is cheap and a wrong one is not.
//!
//! Not here: how the map was made ([`super::MapBuilder`]), ROS (the node's `localization` mode turns the
//! pose into `map → odom`).

use std::time::Instant;

use std::collections::HashMap;

use nalgebra::{Isometry3, Matrix3, Matrix6, Rotation3, Translation3, UnitQuaternion, Vector3};

use super::index::PlaceIndex;
use super::place::PlaceDescriptor;
use super::store::{MapStore, StoreError};
use crate::features::Features;
use crate::geometry::{estimate_absolute_pose, PinholeCamera, RansacOptions};
use crate::matching::mnn::{mutual_nearest_neighbors, MnnOptions};

/// Options of map localization (`map.localize`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalizeOptions {
    /// Keyframes matched locally per query (the retrieval's top k).
    pub candidates: usize,
    /// Descriptor matching of the query against a keyframe's observations.
    pub mnn: MnnOptions,
    /// Robust PnP (threshold on the reprojection error, pixels; `min_inliers` is the verification's).
    pub pnp: RansacOptions,
    /// Share of a 4 × 4 grid over the query image whose cells hold a PnP inlier, at least.
    pub min_spread: f64,
    /// A runner-up candidate more than `ambiguity_distance_m` from the winner with at least this share of
    /// its inliers makes the answer ambiguous (withheld).
    pub max_ambiguity: f64,
    /// See `max_ambiguity`, metres.
    pub ambiguity_distance_m: f64,
    /// Refuse when more than this share of the inliers' landmarks lie on one plane (within
    /// `plane_tolerance_m`): a pose held up by one wall cannot tell a repeated wallpaper, poster or tile
    /// from the place it was mapped at (1 = never refuse for this).
    pub max_plane_share: f64,
    /// See `max_plane_share`, metres.
    pub plane_tolerance_m: f64,
}

impl Default for LocalizeOptions {
    fn default() -> Self {
        Self {
            candidates: 5,
            mnn: MnnOptions {
                min_similarity: 0.5,
                ratio: 0.95,
            },
            pnp: RansacOptions {
                threshold_px: 3.0,
                max_iterations: 2000,
                min_iterations: 20,
                min_inliers: 40,
                ..RansacOptions::default()
            },
            min_spread: 0.25,
            max_ambiguity: 0.8,
            ambiguity_distance_m: 2.0,
            max_plane_share: 0.9,
            plane_tolerance_m: 0.03,
        }
    }
}

impl LocalizeOptions {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.candidates == 0 {
            return Err("map.localize.candidates must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.min_spread) {
            return Err("map.localize.min_spread must be in [0, 1]".into());
        }
        if !(self.max_ambiguity > 0.0 && self.ambiguity_distance_m >= 0.0) {
            return Err("map.localize.max_ambiguity must be > 0, ambiguity_distance_m >= 0".into());
        }
        if !(self.max_plane_share > 0.0
            && self.max_plane_share <= 1.0
            && self.plane_tolerance_m > 0.0)
        {
            return Err(
                "map.localize.max_plane_share must be in (0, 1], plane_tolerance_m > 0".into(),
            );
        }
        if self.pnp.min_inliers < 4 {
            return Err("map.localize.pnp.min_inliers must be >= 4".into());
        }
        Ok(())
    }
}

/// What one candidate keyframe gave.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CandidateResult {
    /// Keyframe id.
    pub keyframe: u64,
    /// Cosine of the place vectors.
    pub similarity: f32,
    /// Descriptor matches to landmark observations.
    pub matches: usize,
    /// PnP inliers (0 without a pose).
    pub inliers: usize,
}

/// The outcome of localizing one image.
#[derive(Debug, Clone)]
pub struct Localization {
    /// The camera's pose in `map` when accepted.
    pub map_from_camera: Option<Isometry3<f64>>,
    /// 6×6 covariance of that pose (x, y, z, then rotation about x, y, z in `map`; REP-103 order).
    pub covariance: Matrix6<f64>,
    /// The keyframe the pose was found against (also when refused).
    pub keyframe: Option<u64>,
    /// Inliers of the winner.
    pub inliers: usize,
    /// Its inlier spread (share of grid cells).
    pub spread: f64,
    /// The share of its inliers' landmarks on one plane.
    pub plane_share: f64,
    /// Why the pose was withheld (`None` when accepted).
    pub refused: Option<String>,
    /// Every candidate, in retrieval order.
    pub candidates: Vec<CandidateResult>,
    /// Time of the retrieval alone and of the whole localization, milliseconds.
    pub retrieval_ms: f64,
    /// See `retrieval_ms`.
    pub total_ms: f64,
}

/// A candidate's pose: (candidate index, camera-to-map, covariance, inlier spread, share of the inliers
/// on one plane).
type CandidatePose = (usize, Isometry3<f64>, Matrix6<f64>, f64, f64);

/// Where the camera is believed to be (an `/initialpose` hint, or the prediction of a tracked robot):
/// only keyframes within `radius_m` of `position` (in `map`) are candidates, and a pose found farther away is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    /// The camera's position in `map`, metres.
    pub position: Vector3<f64>,
    /// How far from it the camera may be, metres.
    pub radius_m: f64,
}

/// A map opened for localization: the database, its retrieval index, the keyframes' positions and the place
/// descriptor.
pub struct Localizer {
    store: MapStore,
    index: PlaceIndex,
    positions: HashMap<u64, Vector3<f64>>,
    place: PlaceDescriptor,
    options: LocalizeOptions,
}

impl Localizer {
    /// Localization in `store` with the retrieval `index` built from it.
    pub fn new(
        store: MapStore,
        index: PlaceIndex,
        place: PlaceDescriptor,
        options: LocalizeOptions,
    ) -> Result<Self, StoreError> {
        let positions = store
            .poses()?
            .into_iter()
            .map(|(id, p)| (id, p.translation.vector))
            .collect();
        Ok(Self {
            store,
            index,
            positions,
            place,
            options,
        })
    }

    /// The map.
    pub fn store(&self) -> &MapStore {
        &self.store
    }

    /// Localizes an image with these features, seen by `camera`, anywhere in the map (`prior: None`) or
    /// near a prior.
    pub fn localize(
        &self,
        query: &Features,
        camera: &PinholeCamera,
        prior: Option<&Prior>,
    ) -> Result<Localization, StoreError> {
        let place = self.place.compute(&query.descriptors);
        self.localize_place(query, &place, camera, prior)
    }

    /// [`Self::localize`] with the query's place vector already computed (by this map's place
    /// descriptor).
    pub fn localize_place(
        &self,
        query: &Features,
        place: &[f32],
        camera: &PinholeCamera,
        prior: Option<&Prior>,
    ) -> Result<Localization, StoreError> {
        let t0 = Instant::now();
        let k = self.options.candidates;
        let ranked = match prior {
            None => self.index.search(place, k),
            // the best places among the keyframes near the prior (a wide retrieval, filtered)
            Some(p) => self
                .index
                .search(place, (k * 20).max(200).min(self.index.len()))
                .into_iter()
                .filter(|(id, _)| {
                    self.positions
                        .get(id)
                        .is_some_and(|c| (c - p.position).norm() <= p.radius_m)
                })
                .take(k)
                .collect(),
        };
        let retrieval_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut candidates = Vec::new();
        let mut poses: Vec<CandidatePose> = Vec::new();
        for (id, similarity) in ranked {
            let mut c = CandidateResult {
                keyframe: id,
                similarity,
                matches: 0,
                inliers: 0,
            };
            // a view (no landmarks) can be retrieved but gives no 3D-2D correspondences
            if let Some(kf) = self
                .store
                .keyframe(id)?
                .filter(|kf| kf.landmark_ids.len() == kf.keypoints.len())
            {
                let matches = mutual_nearest_neighbors(
                    &query.descriptors,
                    &kf.descriptors,
                    &self.options.mnn,
                );
                c.matches = matches.len();
                let positions = self.store.landmarks(
                    &matches
                        .iter()
                        .map(|m| kf.landmark_ids[m.b as usize])
                        .collect::<Vec<_>>(),
                )?;
                let (mut world, mut pixels) = (Vec::new(), Vec::new());
                for (m, p) in matches.iter().zip(positions) {
                    if let Some(p) = p {
                        world.push([p.x, p.y, p.z]);
                        let k = query.keypoints[m.a as usize];
                        pixels.push([k[0] as f64, k[1] as f64]);
                    }
                }
                if let Ok(pose) = estimate_absolute_pose(&world, &pixels, camera, &self.options.pnp)
                {
                    c.inliers = pose.num_inliers;
                    let inlier_px: Vec<[f64; 2]> = pixels
                        .iter()
                        .zip(&pose.inliers)
                        .filter(|(_, &i)| i)
                        .map(|(p, _)| *p)
                        .collect();
                    let spread = grid_spread(&inlier_px, query.image_size);
                    let inlier_world: Vec<[f64; 3]> = world
                        .iter()
                        .zip(&pose.inliers)
                        .filter(|(_, &i)| i)
                        .map(|(p, _)| *p)
                        .collect();
                    let plane = dominant_plane_share(&inlier_world, self.options.plane_tolerance_m);
                    let camera_from_map = Isometry3::from_parts(
                        Translation3::from(pose.translation),
                        UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(
                            pose.rotation,
                        )),
                    );
                    let map_from_camera = camera_from_map.inverse();
                    poses.push((
                        candidates.len(),
                        map_from_camera,
                        position_first_covariance(&pose.covariance, &pose.rotation),
                        spread,
                        plane,
                    ));
                }
            }
            candidates.push(c);
        }
        let best = poses
            .iter()
            .max_by_key(|(i, ..)| candidates[*i].inliers)
            .cloned();
        let mut out = Localization {
            map_from_camera: None,
            covariance: Matrix6::identity() * crate::vo::LOST_VARIANCE,
            keyframe: None,
            inliers: 0,
            spread: 0.0,
            plane_share: 0.0,
            refused: Some(if prior.is_some() && candidates.is_empty() {
                "no keyframe near the prior".into()
            } else {
                "no candidate keyframe gave a pose".into()
            }),
            candidates,
            retrieval_ms,
            total_ms: 0.0,
        };
        if let Some((i, pose, cov, spread, plane)) = best {
            let inliers = out.candidates[i].inliers;
            out.keyframe = Some(out.candidates[i].keyframe);
            out.inliers = inliers;
            out.spread = spread;
            out.plane_share = plane;
            // a runner-up far away that is nearly as good: two places look alike
            let rival = poses.iter().find(|(j, p, ..)| {
                *j != i
                    && (p.translation.vector - pose.translation.vector).norm()
                        > self.options.ambiguity_distance_m
                    && out.candidates[*j].inliers as f64
                        >= self.options.max_ambiguity * inliers as f64
            });
            let off_prior = prior
                .map(|p| (pose.translation.vector - p.position).norm())
                .filter(|d| *d > prior.map_or(f64::INFINITY, |p| p.radius_m));
            out.refused = if inliers < self.options.pnp.min_inliers {
                Some(format!(
                    "{inliers} inliers (need {})",
                    self.options.pnp.min_inliers
                ))
            } else if spread < self.options.min_spread {
                Some(format!(
                    "inliers cover {:.0}% of the image (need {:.0}%)",
                    spread * 100.0,
                    self.options.min_spread * 100.0
                ))
            } else if let Some(d) = off_prior {
                Some(format!("the pose is {d:.1} m from the prior"))
            } else if plane > self.options.max_plane_share {
                Some(format!(
                    "{:.0}% of the inliers lie on one plane (a repeated texture there cannot be told from the mapped one)",
                    plane * 100.0
                ))
            } else if let Some((j, p, ..)) = rival {
                Some(format!(
                    "ambiguous: keyframe {} ({} inliers) puts the camera {:.1} m away",
                    out.candidates[*j].keyframe,
                    out.candidates[*j].inliers,
                    (p.translation.vector - pose.translation.vector).norm()
                ))
            } else {
                None
            };
            if out.refused.is_none() {
                out.map_from_camera = Some(pose);
                out.covariance = cov;
            }
        }
        out.total_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(out)
    }
}

/// The largest share of `points` within `tolerance` of one plane (a deterministic RANSAC over point
/// triples; 1 for fewer than four points).
pub fn dominant_plane_share(points: &[[f64; 3]], tolerance: f64) -> f64 {
    let n = points.len();
    if n < 4 {
        return 1.0;
    }
    let v = |i: usize| nalgebra::Vector3::from(points[i]);
    let mut rng = crate::util::rng::SplitMix64::new(0x9e37);
    let mut best = 0usize;
    for _ in 0..200 {
        let (a, b, c) = (rng.below(n), rng.below(n), rng.below(n));
        let normal = (v(b) - v(a)).cross(&(v(c) - v(a)));
        let norm = normal.norm();
        if norm.is_nan() || norm <= 1e-9 {
            continue;
        }
        let normal = normal / norm;
        let d = normal.dot(&v(a));
        let on = (0..n)
            .filter(|&i| (normal.dot(&v(i)) - d).abs() <= tolerance)
            .count();
        best = best.max(on);
    }
    best as f64 / n as f64
}

/// Share of the cells of a 4 × 4 grid over the image that hold at least one of `pixels`.
pub fn grid_spread(pixels: &[[f64; 2]], image_size: [u32; 2]) -> f64 {
    const N: usize = 4;
    let (w, h) = (image_size[0].max(1) as f64, image_size[1].max(1) as f64);
    let mut cells = [false; N * N];
    for p in pixels {
        let (cx, cy) = ((p[0] / w * N as f64).floor(), (p[1] / h * N as f64).floor());
        if (0.0..N as f64).contains(&cx) && (0.0..N as f64).contains(&cy) {
            cells[cy as usize * N + cx as usize] = true;
        }
    }
    cells.iter().filter(|&&c| c).count() as f64 / (N * N) as f64
}

/// The PnP covariance (rotation vector then translation of `x_cam = R·X + t`, left perturbation) as the
/// covariance of the camera's pose in the map, position first (x, y, z, then rotation), as ROS orders it.
fn position_first_covariance(c: &Matrix6<f64>, r: &Matrix3<f64>) -> Matrix6<f64> {
    // camera-to-map: R_wc = Rᵀ, C = −Rᵀt. With R ← Exp(ω)R, t ← Exp(ω)t + v: R_wc ← R_wc·Exp(−ω) (a
    // rotation of −Rᵀω in the map frame on the left) and C ← C − Rᵀv
    let rt = r.transpose();
    let mut j = Matrix6::zeros();
    j.fixed_view_mut::<3, 3>(0, 3).copy_from(&(-rt));
    j.fixed_view_mut::<3, 3>(3, 0).copy_from(&(-rt));
    j * c * j.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_share_tells_one_wall_from_a_room() {
        let wall: Vec<[f64; 3]> = (0..100)
            .map(|i| [(i % 10) as f64 * 0.1, (i / 10) as f64 * 0.1, 3.0])
            .collect();
        assert_eq!(dominant_plane_share(&wall, 0.01), 1.0);
        let mut room = wall.clone();
        room.extend((0..60).map(|i| [2.0, (i % 6) as f64 * 0.2, 1.0 + (i / 6) as f64 * 0.2]));
        let s = dominant_plane_share(&room, 0.01);
        assert!((s - 100.0 / 160.0).abs() < 1e-9, "{s}");
        assert_eq!(dominant_plane_share(&wall[..3], 0.01), 1.0);
    }

    #[test]
    fn spread_counts_grid_cells() {
        assert_eq!(grid_spread(&[], [640, 480]), 0.0);
        let corners = [
            [1.0, 1.0],
            [639.0, 1.0],
            [1.0, 479.0],
            [639.0, 479.0],
            [-5.0, 3.0],
        ];
        assert_eq!(grid_spread(&corners, [640, 480]), 4.0 / 16.0);
        let all: Vec<[f64; 2]> = (0..16)
            .map(|i| [(i % 4) as f64 * 160.0 + 5.0, (i / 4) as f64 * 120.0 + 5.0])
            .collect();
        assert_eq!(grid_spread(&all, [640, 480]), 1.0);
    }
}
