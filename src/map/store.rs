//! The map on disk: one SQLite database (compiled in through `rusqlite`'s `bundled` feature, so no system
//! library is needed) with a versioned schema (`store/schema.rs`), written one keyframe per transaction.
//!
//! Why SQLite: a robot loses power mid-write. With the write-ahead log and `synchronous = FULL`, a
//! committed keyframe survives a crash or `SIGKILL` and an uncommitted one vanishes whole; the file is never
//! left half-written (the previous map format, one JSON file rewritten every ten keyframes, lost up to ten
//! and had to be rewritten whole as the map grew). Keyframes are read by id, so a map far larger than memory
//! is queried without loading it: the retrieval index holds the place vectors only, and a query reads the
//! few candidate keyframes it matches.
//!
//! Tables: `meta` (key → value: `schema_version`, the local descriptor and its dimension, the place
//! descriptor's id and dimension), `keyframes` (pose in `map`, intrinsics, the place vector and the
//! keyframe's observations: keypoints, descriptors, landmark ids, as little-endian blobs) and `landmarks`
//! (id → position in `map`). A keyframe of an odometry run has a pose and a landmark per observation; a
//! *view* (the `relocalization` mode's mapping run, no odometry) has neither, only its features. A map made with another schema, local descriptor or place
//! descriptor is refused with a message saying which. Not here: what goes into a keyframe (the builder),
//! retrieval, localization.

use std::path::Path;

use nalgebra::{Isometry3, Vector3};
use ndarray::Array2;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::geometry::PinholeCamera;

mod rows;
mod schema;
pub(crate) use rows::check_identity;
use rows::{bytes_f32, bytes_u64, decode_pose, insert, validate};
pub use schema::SCHEMA_VERSION;

/// Errors of the map store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (I/O, disk full, a locked or corrupt file).
    #[error("map {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// The file is a map of another kind than the one asked for.
    #[error("map {path}: {reason}")]
    Incompatible {
        /// The database file.
        path: String,
        /// What differs (schema, descriptor, place descriptor).
        reason: String,
    },
    /// A stored row does not decode (a corrupt or foreign database).
    #[error("map {path}: keyframe {id} is malformed: {reason}")]
    Malformed {
        /// The database file.
        path: String,
        /// The keyframe.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A keyframe handed to the store is inconsistent (lengths, non-finite pose).
    #[error("keyframe {id} not stored: {reason}")]
    InvalidKeyframe {
        /// The keyframe.
        id: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What makes two maps comparable: the local descriptor and the place descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapIdentity {
    /// Local descriptor name (the extractor, e.g. `xfeat`).
    pub descriptor: String,
    /// Its dimension.
    pub descriptor_dim: usize,
    /// [`crate::map::PlaceDescriptor::id`].
    pub place: String,
    /// Its dimension.
    pub place_dim: usize,
}

/// One keyframe of the map.
#[derive(Debug, Clone)]
pub struct MapKeyframe {
    /// Id, unique in the map.
    pub id: u64,
    /// Stamp of the image, nanoseconds.
    pub stamp_ns: i64,
    /// Optical frame id of the image.
    pub frame_id: String,
    /// Intrinsics.
    pub camera: PinholeCamera,
    /// Image width and height.
    pub image_size: [u32; 2],
    /// The camera's pose in `map` (camera-to-map); `None` for a view (known by its image alone).
    pub map_from_camera: Option<Isometry3<f64>>,
    /// The place vector of the whole image.
    pub place: Vec<f32>,
    /// Keypoints of the observations, pixels (a view: all its features).
    pub keypoints: Vec<[f32; 2]>,
    /// Their descriptors (rows).
    pub descriptors: Array2<f32>,
    /// The landmark each observation is of; empty for a keyframe without landmarks (a view).
    pub landmark_ids: Vec<u64>,
}

/// A landmark: a point in `map`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmark {
    /// Id (shared by the keyframes that observe it).
    pub id: u64,
    /// Position in `map`, metres.
    pub position: Vector3<f64>,
}

/// An open map database.
pub struct MapStore {
    conn: Connection,
    path: String,
    identity: MapIdentity,
}

impl MapStore {
    /// Opens the map at `path` for writing, creating it with `identity` when absent; an existing map
    /// must have that identity (a mapping run then extends it).
    pub fn create_or_open(path: &Path, identity: &MapIdentity) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Incompatible {
                path: p.clone(),
                reason: format!("cannot create its folder: {e}"),
            })?;
        }
        let sq = |source| StoreError::Sqlite {
            path: p.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sq)?;
        Self::pragmas(&conn).map_err(sq)?;
        let tx = conn.transaction().map_err(sq)?;
        let has_meta: bool = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sq)?
            > 0;
        if !has_meta {
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(sq)?;
            if tables > 0 {
                return Err(StoreError::Incompatible {
                    path: p,
                    reason: "an SQLite database that is not a matcha map".into(),
                });
            }
            tx.execute_batch(&schema::create_sql()).map_err(sq)?;
            for (k, v) in [
                ("schema_version", SCHEMA_VERSION.to_string()),
                ("descriptor", identity.descriptor.clone()),
                ("descriptor_dim", identity.descriptor_dim.to_string()),
                ("place", identity.place.clone()),
                ("place_dim", identity.place_dim.to_string()),
                ("frame", "map".into()),
            ] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![k, v],
                )
                .map_err(sq)?;
            }
        } else if schema::upgrade(&tx).map_err(sq)? {
            log::info!("map {p}: upgraded to schema version {SCHEMA_VERSION}");
        }
        tx.commit().map_err(sq)?;
        let found = Self::read_identity(&conn, &p)?;
        check_identity(&p, &found, identity)?;
        Ok(Self {
            conn,
            path: p,
            identity: found,
        })
    }

    /// Opens an existing map read-only; `expected` (when given) must match its identity.
    pub fn open(path: &Path, expected: Option<&MapIdentity>) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        if !path.is_file() {
            return Err(StoreError::Incompatible {
                path: p,
                reason: "no such map file".into(),
            });
        }
        if starts_like_json(path) {
            return Err(StoreError::Incompatible {
                path: p,
                reason: "a JSON keyframe map of an earlier matcha version; maps are SQLite databases now: \
                         rebuild it with a mapping run"
                    .into(),
            });
        }
        let sq = |source| StoreError::Sqlite {
            path: p.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sq)?;
        let (conn, found) = match Self::read_identity(&conn, &p) {
            Ok(found) => (conn, found),
            // a WAL database on a read-only file system (a robot's read-only partition) cannot be read the
            // usual way: SQLite wants to create its shared-memory file beside it. Nothing can change the file
            // there, so it is opened as immutable.
            Err(first) => {
                let immutable = Connection::open_with_flags(
                    immutable_uri(path),
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )
                .ok()
                .and_then(|c| Self::read_identity(&c, &p).ok().map(|f| (c, f)));
                match immutable {
                    Some(opened) => {
                        log::info!("map {p}: opened as immutable (a read-only file system)");
                        opened
                    }
                    None => return Err(first),
                }
            }
        };
        if let Some(e) = expected {
            check_identity(&p, &found, e)?;
        }
        Ok(Self {
            conn,
            path: p,
            identity: found,
        })
    }

    fn pragmas(conn: &Connection) -> rusqlite::Result<()> {
        // WAL: a commit appends to the log, readers are not blocked; FULL: the log is fsynced at every
        // commit, so a committed keyframe survives power loss, not only a process crash
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    fn read_identity(conn: &Connection, p: &str) -> Result<MapIdentity, StoreError> {
        let get = |key: &str| -> Result<String, StoreError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| StoreError::Incompatible {
                    path: p.into(),
                    reason: format!("not a matcha map ({e})"),
                })?
                .ok_or_else(|| StoreError::Incompatible {
                    path: p.into(),
                    reason: format!("not a matcha map (no '{key}' in its meta table)"),
                })
        };
        let version = get("schema_version")?;
        if !schema::READABLE.iter().any(|v| v.to_string() == version) {
            return Err(StoreError::Incompatible {
                path: p.into(),
                reason: format!(
                    "schema version {version}, this build reads versions up to {SCHEMA_VERSION}: rebuild the map with this version"
                ),
            });
        }
        let num = |key: &str| -> Result<usize, StoreError> {
            get(key)?.parse().map_err(|_| StoreError::Incompatible {
                path: p.into(),
                reason: format!("meta '{key}' is not a number"),
            })
        };
        Ok(MapIdentity {
            descriptor: get("descriptor")?,
            descriptor_dim: num("descriptor_dim")?,
            place: get("place")?,
            place_dim: num("place_dim")?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The map's descriptors.
    pub fn identity(&self) -> &MapIdentity {
        &self.identity
    }

    /// Stores a keyframe and the landmarks it observes (new ones added, known ones moved to the given
    /// position) in one transaction: after a crash either all of it is in the map or none.
    pub fn add_keyframe(
        &mut self,
        kf: &MapKeyframe,
        landmarks: &[Landmark],
    ) -> Result<(), StoreError> {
        self.add_keyframes(&[(kf.clone(), landmarks.to_vec())])
    }

    /// Stores several keyframes with their landmarks in one transaction (a downloaded part of a map, a
    /// benchmark): all or none.
    pub fn add_keyframes(
        &mut self,
        batch: &[(MapKeyframe, Vec<Landmark>)],
    ) -> Result<(), StoreError> {
        for (kf, landmarks) in batch {
            self.check(kf, landmarks)?;
        }
        let p = self.path.clone();
        let sq = |source| StoreError::Sqlite {
            path: p.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        for (kf, landmarks) in batch {
            insert(&tx, kf, landmarks).map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    fn check(&self, kf: &MapKeyframe, landmarks: &[Landmark]) -> Result<(), StoreError> {
        validate(kf, &self.identity)?;
        if let Some(l) = landmarks
            .iter()
            .find(|l| !l.position.iter().all(|v| v.is_finite()) || i64::try_from(l.id).is_err())
        {
            return Err(StoreError::InvalidKeyframe {
                id: kf.id,
                reason: format!("landmark {} is not finite or its id is too large", l.id),
            });
        }
        Ok(())
    }

    /// Number of keyframes.
    pub fn keyframe_count(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM keyframes", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// The largest keyframe and landmark ids in the map (0 when empty), to continue numbering.
    pub fn max_ids(&self) -> Result<(u64, u64), StoreError> {
        let q = |sql: &str| {
            self.conn
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.unwrap_or(0).max(0) as u64)
                .map_err(|source| StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                })
        };
        Ok((
            q("SELECT max(id) FROM keyframes")?,
            q("SELECT max(id) FROM landmarks")?,
        ))
    }

    /// Every keyframe's id and place vector, in id order (what the retrieval index is built from).
    pub fn place_vectors(&self) -> Result<Vec<(u64, Vec<f32>)>, StoreError> {
        self.each_keyframe("place", |id, blob| {
            let place = bytes_f32(blob);
            if blob.len() != 4 * self.identity.place_dim {
                return Err(self.malformed(id, "place vector of the wrong length"));
            }
            Ok(place)
        })
    }

    /// Every posed keyframe's id with its pose in `map`, in id order (views have none).
    pub fn poses(&self) -> Result<Vec<(u64, Isometry3<f64>)>, StoreError> {
        self.each_keyframe("pose", |id, blob| {
            decode_pose(blob).ok_or_else(|| self.malformed(id, "bad pose"))
        })
    }

    /// `decode` of one blob column of every keyframe where it is not `NULL`, in id order.
    fn each_keyframe<T>(
        &self,
        column: &str,
        decode: impl Fn(u64, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let sq = |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT id, {column} FROM keyframes WHERE {column} IS NOT NULL ORDER BY id"
            ))
            .map_err(sq)?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(sq)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, blob) = row.map_err(sq)?;
            out.push((id, decode(id, &blob)?));
        }
        Ok(out)
    }

    /// One keyframe, or `None` when the map has no such id.
    pub fn keyframe(&self, id: u64) -> Result<Option<MapKeyframe>, StoreError> {
        let sq = |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        };
        type Row = (
            i64,
            String,
            String,
            u32,
            u32,
            Option<Vec<u8>>,
            Vec<u8>,
            Vec<u8>,
            Vec<u8>,
            Vec<u8>,
        );
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT stamp_ns, frame_id, camera, width, height, pose, place, keypoints, descriptors, \
                 landmark_ids FROM keyframes WHERE id = ?1",
            )
            .map_err(sq)?
            .query_row([id as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .optional()
            .map_err(sq)?;
        let Some((stamp_ns, frame_id, camera, w, h, pose, place, kps, descs, lms)) = row else {
            return Ok(None);
        };
        let bad = |reason: &str| self.malformed(id, reason);
        let camera: PinholeCamera =
            serde_json::from_str(&camera).map_err(|_| bad("camera is not readable"))?;
        let map_from_camera = match pose {
            Some(blob) => Some(decode_pose(&blob).ok_or_else(|| bad("bad pose"))?),
            None => None,
        };
        if kps.len() % 4 != 0 || descs.len() % 4 != 0 || lms.len() % 8 != 0 || place.len() % 4 != 0
        {
            return Err(bad("a blob is not a whole number of values"));
        }
        let kps = bytes_f32(&kps);
        let landmark_ids = bytes_u64(&lms);
        let n = kps.len() / 2;
        let dim = self.identity.descriptor_dim;
        let descs = bytes_f32(&descs);
        if !kps.len().is_multiple_of(2) || descs.len() != n * dim {
            return Err(bad("observation arrays of inconsistent lengths"));
        }
        let kf = MapKeyframe {
            id,
            stamp_ns,
            frame_id,
            camera,
            image_size: [w, h],
            map_from_camera,
            place: bytes_f32(&place),
            keypoints: kps.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
            descriptors: Array2::from_shape_vec((n, dim), descs)
                .map_err(|_| bad("descriptor array"))?,
            landmark_ids,
        };
        validate(&kf, &self.identity).map_err(|e| bad(&e.to_string()))?;
        Ok(Some(kf))
    }

    /// The positions of the given landmarks (`None` for an id the map lacks).
    pub fn landmarks(&self, ids: &[u64]) -> Result<Vec<Option<Vector3<f64>>>, StoreError> {
        let sq = |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut st = self
            .conn
            .prepare_cached("SELECT x, y, z FROM landmarks WHERE id = ?1")
            .map_err(sq)?;
        ids.iter()
            .map(|&id| {
                st.query_row([id as i64], |r| {
                    Ok(Vector3::new(r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(sq)
            })
            .collect()
    }

    /// SQLite's own consistency check (`PRAGMA integrity_check`): `Ok(())` or what it found.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        if r == "ok" {
            Ok(())
        } else {
            Err(StoreError::Incompatible {
                path: self.path.clone(),
                reason: format!("integrity check: {r}"),
            })
        }
    }

    fn malformed(&self, id: u64, reason: &str) -> StoreError {
        StoreError::Malformed {
            path: self.path.clone(),
            id,
            reason: reason.into(),
        }
    }
}

/// Whether the file's first non-blank byte is `{` (the JSON maps of earlier versions; SQLite files start
/// with "SQLite format 3").
fn starts_like_json(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// The SQLite URI that opens `path` as an immutable database (the characters a URI gives a meaning escaped).
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
pub(crate) mod tests;
