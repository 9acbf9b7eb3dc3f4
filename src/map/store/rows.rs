//! How a keyframe becomes rows and blobs of the map database and back: the insert statements, the
//! little-endian blob codecs, the pose encoding, and the checks a keyframe and a map's identity must pass.
//! Not here: the connection, the schema, transactions (`super`).

use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion};
use rusqlite::params;

use super::{Landmark, MapIdentity, MapKeyframe, StoreError};

pub(super) fn insert(
    tx: &rusqlite::Transaction<'_>,
    kf: &MapKeyframe,
    landmarks: &[Landmark],
) -> rusqlite::Result<()> {
    let pose = kf.map_from_camera.map(|p| {
        let (q, t) = (p.rotation.quaternion(), p.translation.vector);
        f64_bytes(&[t.x, t.y, t.z, q.i, q.j, q.k, q.w])
    });
    let camera = serde_json::to_string(&kf.camera).unwrap_or_default();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO keyframes (id, stamp_ns, frame_id, camera, width, height, pose, place, \
         keypoints, descriptors, landmark_ids) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        kf.id as i64,
        kf.stamp_ns,
        kf.frame_id,
        camera,
        kf.image_size[0],
        kf.image_size[1],
        pose,
        f32_bytes(&kf.place),
        f32_bytes(&kf.keypoints.iter().flatten().copied().collect::<Vec<_>>()),
        f32_bytes(&kf.descriptors.iter().copied().collect::<Vec<_>>()),
        u64_bytes(&kf.landmark_ids),
    ])?;
    let mut up = tx
        .prepare_cached("INSERT OR REPLACE INTO landmarks (id, x, y, z) VALUES (?1, ?2, ?3, ?4)")?;
    for l in landmarks {
        up.execute(params![
            l.id as i64,
            l.position.x,
            l.position.y,
            l.position.z
        ])?;
    }
    Ok(())
}

pub(crate) fn check_identity(
    p: &str,
    found: &MapIdentity,
    want: &MapIdentity,
) -> Result<(), StoreError> {
    let reason = if (found.descriptor.as_str(), found.descriptor_dim)
        != (want.descriptor.as_str(), want.descriptor_dim)
    {
        format!(
            "built with local descriptor '{}' ({}-D), this run uses '{}' ({}-D): rebuild the map or change engine.extractor",
            found.descriptor, found.descriptor_dim, want.descriptor, want.descriptor_dim
        )
    } else if (found.place.as_str(), found.place_dim) != (want.place.as_str(), want.place_dim) {
        format!(
            "built with place descriptor '{}' ({}-D), this run uses '{}' ({}-D): rebuild the map or set map.place / map.vocabulary as it was built",
            found.place, found.place_dim, want.place, want.place_dim
        )
    } else {
        return Ok(());
    };
    Err(StoreError::Incompatible {
        path: p.into(),
        reason,
    })
}

pub(super) fn validate(kf: &MapKeyframe, identity: &MapIdentity) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::InvalidKeyframe { id: kf.id, reason };
    let n = kf.keypoints.len();
    if kf.descriptors.nrows() != n || !(kf.landmark_ids.is_empty() || kf.landmark_ids.len() == n) {
        return Err(bad(
            "keypoints, descriptors and landmark ids differ in number".into(),
        ));
    }
    if kf.map_from_camera.is_none() && !kf.landmark_ids.is_empty() {
        return Err(bad(
            "a keyframe without a pose (a view) cannot observe landmarks".into(),
        ));
    }
    if n > 0 && kf.descriptors.ncols() != identity.descriptor_dim {
        return Err(bad(format!(
            "{}-D descriptors in a {}-D map",
            kf.descriptors.ncols(),
            identity.descriptor_dim
        )));
    }
    if kf.place.len() != identity.place_dim {
        return Err(bad(format!(
            "{}-D place vector in a map of {}-D ones",
            kf.place.len(),
            identity.place_dim
        )));
    }
    if kf.map_from_camera.is_some_and(|p| {
        !(p.translation.vector.iter().all(|v| v.is_finite())
            && p.rotation.coords.iter().all(|v| v.is_finite()))
    }) {
        return Err(bad("pose is not finite".into()));
    }
    if i64::try_from(kf.id).is_err() || kf.landmark_ids.iter().any(|&l| i64::try_from(l).is_err()) {
        return Err(bad("an id is too large".into()));
    }
    Ok(())
}

pub(super) fn decode_pose(blob: &[u8]) -> Option<Isometry3<f64>> {
    let v = bytes_f64(blob);
    if blob.len() != 7 * 8 || !v.iter().all(|x| x.is_finite()) {
        return None;
    }
    let q = Quaternion::new(v[6], v[3], v[4], v[5]);
    if q.norm() < 1e-9 {
        return None;
    }
    Some(Isometry3::from_parts(
        Translation3::new(v[0], v[1], v[2]),
        UnitQuaternion::from_quaternion(q),
    ))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u64_bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub(super) fn bytes_f64(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

pub(super) fn bytes_u64(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}
