//! A map read and extended by appearance alone: what the node's `relocalization` mode stands on.
//!
//! Retrieval ranks the map's keyframes by the configured place descriptor (VLAD by default, the same vector
//! and index as [`super::Localizer`]) and hands the few best back with their local features; the caller
//! matches them and decides (the relocalization mode keeps the keyframe with the most pose inliers and
//! publishes the pose relative to it). A mapping run adds *views*: keyframes known by their image alone (all
//! local features and a place vector, no pose in `map`, no landmarks), because without odometry there is
//! no pose to give them. A map built by the stereo odometry (posed keyframes with landmarks) is retrieved
//! the same way, and views in a map do not disturb its metric localization (they give no 3D–2D
//! correspondences).
//!
//! In a map with posed keyframes (built by the stereo odometry), [`AppearanceMap::localize`] also gives the
//! query's pose in `map` by PnP against their landmarks ([`Localizer`]: a monocular camera localized in a
//! metric map).
//!
//! Why the one store: a view is written in its own transaction like any keyframe (a crash loses at most the
//! view being written, never the map), a map made with another descriptor is refused with the store's
//! message, and one file serves both modes. Not here: matching, geometry, ROS.

use std::path::Path;

use nalgebra::Isometry3;
use ndarray::Array2;

use super::{
    Localization, Localizer, MapError, MapKeyframe, MapOptions, MapStore, PlaceDescriptor,
    PlaceIndex,
};
use crate::features::Features;
use crate::geometry::PinholeCamera;

/// A keyframe handed back by retrieval, with what matching it needs.
#[derive(Debug, Clone)]
pub struct RetrievedKeyframe {
    /// Its id in the map.
    pub id: u64,
    /// Stamp of its image, nanoseconds.
    pub stamp_ns: i64,
    /// Its intrinsics.
    pub camera: PinholeCamera,
    /// Its pose in `map`; `None` for a view.
    pub map_from_camera: Option<Isometry3<f64>>,
    /// Its local features (scores are not stored: all 1).
    pub features: Features,
    /// Place similarity to the query (cosine).
    pub similarity: f32,
}

/// A map opened for retrieval by appearance, and for adding views when writable.
pub struct AppearanceMap {
    store: MapStore,
    place: PlaceDescriptor,
    index: PlaceIndex,
    next_id: u64,
    writable: bool,
    /// Localization against the posed keyframes' landmarks (a second, read-only connection); `None` when
    /// the map had none when opened.
    localizer: Option<Localizer>,
}

impl AppearanceMap {
    /// Opens the existing map at `path`, made with local descriptor `descriptor` (its dimension is the
    /// map's; [`Self::check_dim`] compares it with the extractor's) and the place descriptor of `options`.
    /// `writable`: views may be added (a version 1 map is upgraded).
    pub fn open(
        path: &Path,
        descriptor: &str,
        options: &MapOptions,
        writable: bool,
    ) -> Result<Self, MapError> {
        let (store, place) = options.open_store(path, descriptor, None, writable)?;
        let dim = store.identity().descriptor_dim;
        let localizer = if store.poses()?.is_empty() {
            None
        } else {
            Some(options.open_localizer(path, descriptor, dim)?)
        };
        let mut map = Self::from_store(path, store, place, options, writable)?;
        map.localizer = localizer;
        Ok(map)
    }

    /// Creates a map at `path` for `local_dim`-D `descriptor` descriptors (or opens it for writing when it
    /// exists with that identity).
    pub fn create(
        path: &Path,
        descriptor: &str,
        local_dim: usize,
        options: &MapOptions,
    ) -> Result<Self, MapError> {
        let (store, place) = options.create_store(path, descriptor, local_dim)?;
        Self::from_store(path, store, place, options, true)
    }

    fn from_store(
        path: &Path,
        store: MapStore,
        place: PlaceDescriptor,
        options: &MapOptions,
        writable: bool,
    ) -> Result<Self, MapError> {
        let index = options.place_index(path, &place, &store)?;
        let next_id = store.max_ids()?.0 + 1;
        Ok(Self {
            store,
            place,
            index,
            next_id,
            writable,
            localizer: None,
        })
    }

    /// The query's pose in `map` from the landmarks of the map's posed keyframes (retrieval among them, PnP,
    /// verification: [`Localizer::localize`]); `place` is the query's place vector ([`Self::place_of`]);
    /// `None` when the map has no posed keyframe.
    pub fn localize(
        &self,
        query: &Features,
        place: &[f32],
        camera: &PinholeCamera,
    ) -> Result<Option<Localization>, MapError> {
        match &self.localizer {
            Some(l) => Ok(Some(l.localize_place(query, place, camera, None)?)),
            None => Ok(None),
        }
    }

    /// The database.
    pub fn store(&self) -> &MapStore {
        &self.store
    }

    /// Number of keyframes (posed ones and views).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the map has no keyframe.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// `Err` with the reason when an extractor's `dim`-D descriptors cannot be compared with the map's.
    pub fn check_dim(&self, dim: usize) -> Result<(), MapError> {
        let map_dim = self.store.identity().descriptor_dim;
        if dim == map_dim {
            return Ok(());
        }
        Err(MapError::Store(super::StoreError::Incompatible {
            path: self.store.path().into(),
            reason: format!("its descriptors are {map_dim}-D, the extractor gives {dim}-D"),
        }))
    }

    /// The place vector of an image with these local descriptors.
    pub fn place_of(&self, descriptors: &Array2<f32>) -> Vec<f32> {
        self.place.compute(descriptors)
    }

    /// The `k` keyframes most similar to `place` (best first), each at least `min_similarity`, read from
    /// the map with their features.
    pub fn retrieve(
        &self,
        place: &[f32],
        k: usize,
        min_similarity: f32,
    ) -> Result<Vec<RetrievedKeyframe>, MapError> {
        let mut out = Vec::new();
        for (id, similarity) in self.index.search(place, k) {
            if similarity.is_nan() || similarity < min_similarity {
                continue;
            }
            if let Some(kf) = self.store.keyframe(id)? {
                out.push(retrieved(kf, similarity));
            }
        }
        Ok(out)
    }

    /// Adds the image with `features` as a view (committed before this returns); its id.
    pub fn add_view(
        &mut self,
        features: &Features,
        place: Vec<f32>,
        camera: &PinholeCamera,
        stamp_ns: i64,
        frame_id: &str,
    ) -> Result<u64, MapError> {
        if !self.writable {
            return Err(MapError::Options(format!(
                "map {} is open read-only: no view can be added",
                self.store.path()
            )));
        }
        let id = self.next_id;
        let view = MapKeyframe {
            id,
            stamp_ns,
            frame_id: frame_id.into(),
            camera: *camera,
            image_size: features.image_size,
            map_from_camera: None,
            place,
            keypoints: features.keypoints.clone(),
            descriptors: features.descriptors.clone(),
            landmark_ids: Vec::new(),
        };
        self.store.add_keyframe(&view, &[])?;
        self.index.add(id, &view.place);
        self.next_id += 1;
        Ok(id)
    }
}

/// Share of the most inliers within which candidates count as equally well matched.
pub const NEAR_TIE_SHARE: f64 = 0.8;

/// Which of the matched candidates (`(pose inliers, median parallax in degrees)`, `None` without a pose) is
/// the query's reference keyframe: among those with a pose and at least [`NEAR_TIE_SHARE`] of the most
/// inliers, the one of least parallax — the nearest viewpoint; a neighbour along the path that happens to see
/// a little more texture matches about as well but from further away. `None` when no candidate has a pose
/// (the first is then reported without one); ties keep the earlier (better retrieved) candidate.
pub fn choose_reference(candidates: &[(usize, Option<f64>)]) -> Option<usize> {
    let most = candidates
        .iter()
        .filter(|c| c.1.is_some())
        .map(|c| c.0)
        .max()?;
    candidates
        .iter()
        .enumerate()
        .filter_map(|(i, &(n, parallax))| {
            let p = parallax.filter(|p| p.is_finite())?;
            (n as f64 >= NEAR_TIE_SHARE * most as f64).then_some((i, p))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

fn retrieved(kf: MapKeyframe, similarity: f32) -> RetrievedKeyframe {
    let n = kf.keypoints.len();
    RetrievedKeyframe {
        id: kf.id,
        stamp_ns: kf.stamp_ns,
        camera: kf.camera,
        map_from_camera: kf.map_from_camera,
        features: Features {
            keypoints: kf.keypoints,
            scores: vec![1.0; n],
            descriptors: kf.descriptors,
            image_size: kf.image_size,
            gray: None,
        },
        similarity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Aggregation;
    use ndarray::array;

    fn features(rows: Array2<f32>) -> Features {
        let n = rows.nrows();
        Features {
            keypoints: (0..n).map(|i| [i as f32, 2.0 * i as f32]).collect(),
            scores: vec![0.5; n],
            descriptors: rows,
            image_size: [64, 48],
            gray: None,
        }
    }

    fn mean_pooling() -> MapOptions {
        MapOptions {
            place: Aggregation::Mean,
            ..MapOptions::default()
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        crate::map::store::tests::temp(&format!("appearance-{name}"))
    }

    #[test]
    fn views_are_retrieved_by_place_after_a_restart_and_a_read_only_map_takes_none() {
        let path = temp("views");
        let cam = PinholeCamera::new(100.0, 100.0, 32.0, 24.0).unwrap();
        let opts = mean_pooling();
        let a = features(array![[1.0, 0.0, 0.0], [0.8, 0.6, 0.0]]);
        let b = features(array![[0.0, 0.0, 1.0], [0.0, 0.6, 0.8]]);
        {
            let mut m = AppearanceMap::create(&path, "test", 3, &opts).unwrap();
            for (f, stamp) in [(&a, 10), (&b, 20)] {
                let place = m.place_of(&f.descriptors);
                m.add_view(f, place, &cam, stamp, "cam").unwrap();
            }
            assert_eq!(m.len(), 2);
        }
        let m = AppearanceMap::open(&path, "test", &opts, false).unwrap();
        assert_eq!(m.len(), 2);
        m.check_dim(3).unwrap();
        assert!(m.check_dim(4).unwrap_err().to_string().contains("4-D"));
        let q = m.place_of(&array![[0.0, 0.1, 0.99]]);
        let top = m.retrieve(&q, 1, -1.0).unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].id, top[0].stamp_ns), (2, 20));
        assert!(top[0].map_from_camera.is_none());
        assert_eq!(top[0].features.descriptors, b.descriptors);
        assert_eq!(top[0].features.keypoints, b.keypoints);
        assert_eq!(top[0].camera, cam);
        // the similarity floor
        assert!(m.retrieve(&q, 5, 0.999).unwrap().is_empty());
        let mut m = m;
        let place = m.place_of(&a.descriptors);
        assert!(m.add_view(&a, place, &cam, 30, "cam").is_err());
        // another extractor's map is refused by name
        let e = AppearanceMap::open(&path, "disk", &opts, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'test'") && e.contains("'disk'"), "{e}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn the_reference_is_the_nearest_view_among_the_well_matched() {
        // measured in the node's relocalization test: the nearest keyframe (1.3°) against a neighbour with
        // 11% more inliers seen from further (2.9°)
        let c = [(837, Some(1.35)), (930, Some(2.88)), (766, Some(3.13))];
        assert_eq!(choose_reference(&c), Some(0));
        // far fewer inliers do not win by parallax
        assert_eq!(
            choose_reference(&[(300, Some(0.5)), (930, Some(2.9))]),
            Some(1)
        );
        // no pose anywhere, or nothing retrieved
        assert_eq!(choose_reference(&[(0, None), (0, None)]), None);
        assert_eq!(choose_reference(&[]), None);
        // a candidate without a pose never wins; equal parallax keeps the earlier one
        assert_eq!(
            choose_reference(&[(0, None), (50, Some(1.0)), (60, Some(1.0))]),
            Some(1)
        );
    }

    #[test]
    fn a_reopened_writable_map_numbers_after_its_keyframes() {
        let path = temp("numbering");
        let cam = PinholeCamera::new(100.0, 100.0, 32.0, 24.0).unwrap();
        let opts = mean_pooling();
        let f = features(array![[1.0, 0.0, 0.0]]);
        {
            let mut m = AppearanceMap::create(&path, "test", 3, &opts).unwrap();
            let place = m.place_of(&f.descriptors);
            assert_eq!(m.add_view(&f, place, &cam, 1, "cam").unwrap(), 1);
        }
        let mut m = AppearanceMap::open(&path, "test", &opts, true).unwrap();
        let place = m.place_of(&f.descriptors);
        assert_eq!(m.add_view(&f, place, &cam, 2, "cam").unwrap(), 2);
        assert_eq!(m.store().keyframe_count().unwrap(), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
