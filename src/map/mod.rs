//! The localization map: keyframes with their poses in `map`, their landmark observations and a place
//! vector each, stored in SQLite ([`store`]), retrieved by place ([`place`], [`index`]) and localized
//! against by PnP ([`localize`]); the same map read and extended by appearance alone ([`appearance`]: the
//! node's `relocalization` mode, whose keyframes are views without a pose).
//!
//! A map is made from an odometry run ([`MapBuilder`], fed each new keyframe of
//! [`crate::vo::VisualOdometry`]): the run's odometry frame becomes `map`, so a stereo run gives a metric
//! map. `matcha map build` does this offline over a sequence folder. Not here: ROS (the node's
//! `localization` mode), the fleet database.

pub mod appearance;
pub mod index;
pub mod localize;
pub mod place;
#[cfg(feature = "hnsw")]
pub mod saved_index;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nalgebra::Isometry3;

pub use appearance::{choose_reference, AppearanceMap, RetrievedKeyframe};
pub use index::{GraphSource, IndexOptions, PlaceIndex};
pub use localize::{Localization, LocalizeOptions, Localizer, Prior};
pub use place::{Aggregation, PlaceDescriptor, PlaceError, Projection, Vocabulary};
pub use store::{Landmark, MapIdentity, MapKeyframe, MapStore, StoreError};

use crate::features::Features;
use crate::geometry::PinholeCamera;
use crate::vo::KeyframeView;

/// Errors of the map layer.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The place descriptor (vocabulary).
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// An option is out of range.
    #[error("invalid map options: {0}")]
    Options(String),
}

/// Options of the map (the `map` section of the configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapOptions {
    /// Place descriptor: `vlad` (default), `bow` or `mean`.
    pub place: Aggregation,
    /// The k-means vocabulary of `vlad` / `bow` (`.npy`, `k × D`) for the configured extractor; a
    /// relative path is looked for in the working directory, beside the sources and in each ROS prefix's
    /// `share/matcha` ([`resolve_asset`]).
    pub vocabulary: String,
    /// `vlad` only: the PCA of the VLAD vectors (`.npy`, trained with the vocabulary; empty = none, the
    /// full `k·D` vector is used), resolved like `vocabulary`.
    pub projection: String,
    /// Retrieval index.
    pub index: IndexOptions,
    /// Localization.
    pub localize: LocalizeOptions,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            place: Aggregation::Vlad,
            vocabulary: "assets/place/xfeat-vlad64.npy".into(),
            projection: "assets/place/xfeat-vlad64-pca256.npy".into(),
            index: IndexOptions::default(),
            localize: LocalizeOptions::default(),
        }
    }
}

impl MapOptions {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        self.index.validate()?;
        self.localize.validate()
    }

    /// The place descriptor for `local_dim`-D local descriptors (reads the vocabulary when one is used).
    pub fn place_descriptor(&self, local_dim: usize) -> Result<PlaceDescriptor, MapError> {
        let vocabulary = match self.place {
            Aggregation::Mean => None,
            _ => Some(Arc::new(Vocabulary::load(&resolve_asset(Path::new(
                &self.vocabulary,
            )))?)),
        };
        let projection = match self.place {
            Aggregation::Vlad if !self.projection.is_empty() => Some(Arc::new(Projection::load(
                &resolve_asset(Path::new(&self.projection)),
            )?)),
            _ => None,
        };
        Ok(PlaceDescriptor::new(
            self.place, vocabulary, projection, local_dim,
        )?)
    }

    /// Opens a map for localization: its identity checked against `descriptor` and this place
    /// descriptor, the retrieval index built from its place vectors.
    pub fn open_localizer(
        &self,
        path: &Path,
        descriptor: &str,
        local_dim: usize,
    ) -> Result<Localizer, MapError> {
        let (store, place) = self.open_store(path, descriptor, Some(local_dim), false)?;
        let index = self.place_index(path, &place, &store)?;
        Ok(Localizer::new(store, index, place, self.localize.clone())?)
    }

    /// Opens an existing map (read-only, or for writing when `writable`) whose local descriptor must be
    /// `descriptor`, `local_dim`-D (`None`: the map's dimension, checked by the caller against its
    /// extractor later), and whose place descriptor must be this one. The local descriptor is checked
    /// first, so a map of another extractor is named as such.
    pub fn open_store(
        &self,
        path: &Path,
        descriptor: &str,
        local_dim: Option<usize>,
        writable: bool,
    ) -> Result<(MapStore, PlaceDescriptor), MapError> {
        let store = MapStore::open(path, None)?;
        let found = store.identity().clone();
        let mut identity = MapIdentity {
            descriptor: descriptor.into(),
            descriptor_dim: local_dim.unwrap_or(found.descriptor_dim),
            ..found.clone()
        };
        store::check_identity(store.path(), &found, &identity)?;
        let place = self.place_descriptor(identity.descriptor_dim)?;
        identity.place = place.id();
        identity.place_dim = place.dim();
        store::check_identity(store.path(), &found, &identity)?;
        let store = if writable {
            drop(store);
            MapStore::create_or_open(path, &identity)?
        } else {
            store
        };
        Ok((store, place))
    }

    /// Opens the map at `path` for writing, creating it for `local_dim`-D `descriptor` descriptors and this
    /// place descriptor when absent (an existing map must have that identity).
    pub fn create_store(
        &self,
        path: &Path,
        descriptor: &str,
        local_dim: usize,
    ) -> Result<(MapStore, PlaceDescriptor), MapError> {
        let place = self.place_descriptor(local_dim)?;
        let identity = MapIdentity {
            descriptor: descriptor.into(),
            descriptor_dim: local_dim,
            place: place.id(),
            place_dim: place.dim(),
        };
        Ok((MapStore::create_or_open(path, &identity)?, place))
    }

    /// The retrieval index of the map at `path` (a saved graph beside it is used when it matches).
    pub fn place_index(
        &self,
        path: &Path,
        place: &PlaceDescriptor,
        store: &MapStore,
    ) -> Result<PlaceIndex, MapError> {
        let entries = store.place_vectors()?;
        #[cfg(feature = "hnsw")]
        let index = saved_index::open(path, &place.id(), entries, place.dim(), self.index.clone());
        #[cfg(not(feature = "hnsw"))]
        let index = {
            let _ = path;
            PlaceIndex::build(entries, place.dim(), self.index.clone())
        };
        Ok(index)
    }
}

/// A relative asset path: the first that exists of the working directory, the source tree this binary
/// was built from, and `share/matcha/` under each `$AMENT_PREFIX_PATH` prefix; else the path as given
/// (reading it then fails with a message naming it).
pub fn resolve_asset(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let mut candidates = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(path)];
    if let Some(prefixes) = std::env::var_os("AMENT_PREFIX_PATH") {
        candidates
            .extend(std::env::split_paths(&prefixes).map(|p| p.join("share/matcha").join(path)));
    }
    candidates
        .into_iter()
        .find(|c| c.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Writes a map from an odometry run, one keyframe at a time (each in its own transaction).
pub struct MapBuilder {
    store: MapStore,
    place: PlaceDescriptor,
    next_id: u64,
    /// Added to the odometry's landmark ids: a run that extends a map numbers after its landmarks.
    landmark_offset: u64,
}

impl MapBuilder {
    /// A builder writing to `path` (created, or extended when it is a map of the same identity).
    pub fn create_or_open(
        path: &Path,
        descriptor: &str,
        local_dim: usize,
        options: &MapOptions,
    ) -> Result<Self, MapError> {
        let (store, place) = options.create_store(path, descriptor, local_dim)?;
        let (max_keyframe, max_landmark) = store.max_ids()?;
        let landmark_offset = if store.keyframe_count()? > 0 {
            max_landmark + 1
        } else {
            0
        };
        Ok(Self {
            store,
            place,
            next_id: max_keyframe + 1,
            landmark_offset,
        })
    }

    /// The map written so far.
    pub fn store(&self) -> &MapStore {
        &self.store
    }

    /// Adds an odometry keyframe (`keyframe`, from [`crate::vo::VisualOdometry::newest_keyframe`]) whose
    /// image had `features`; `map_from_world` places the odometry's world (its first camera) in the map
    /// (the node passes its `odom_from_world`: the run's `odom` is the map). Returns the new keyframe's id.
    pub fn add(
        &mut self,
        keyframe: KeyframeView<'_>,
        features: &Features,
        camera: &PinholeCamera,
        stamp_ns: i64,
        frame_id: &str,
        map_from_world: &Isometry3<f64>,
    ) -> Result<u64, MapError> {
        let id = self.next_id;
        let landmarks: Vec<Landmark> = keyframe
            .ids
            .iter()
            .zip(keyframe.points)
            .map(|(&lid, p)| Landmark {
                id: lid + self.landmark_offset,
                position: (map_from_world * nalgebra::Point3::from(*p)).coords,
            })
            .collect();
        let kf = MapKeyframe {
            id,
            stamp_ns,
            frame_id: frame_id.into(),
            camera: *camera,
            image_size: features.image_size,
            map_from_camera: Some(map_from_world * keyframe.world_from_camera),
            place: self.place.compute(&features.descriptors),
            keypoints: keyframe.keypoints.to_vec(),
            descriptors: keyframe.descriptors.clone(),
            landmark_ids: keyframe
                .ids
                .iter()
                .map(|l| l + self.landmark_offset)
                .collect(),
        };
        self.store.add_keyframe(&kf, &landmarks)?;
        self.next_id += 1;
        Ok(id)
    }
}
