use super::*;
use nalgebra::{Translation3, UnitQuaternion};
use ndarray::array;

fn identity() -> MapIdentity {
    MapIdentity {
        descriptor: "xfeat".into(),
        descriptor_dim: 2,
        place: "vlad2-abc".into(),
        place_dim: 3,
    }
}

fn keyframe(id: u64) -> MapKeyframe {
    MapKeyframe {
        id,
        stamp_ns: 1000 + id as i64,
        frame_id: "cam".into(),
        camera: PinholeCamera::new(500.0, 501.0, 320.0, 240.0).unwrap(),
        image_size: [640, 480],
        map_from_camera: Some(Isometry3::from_parts(
            Translation3::new(1.0, 2.0, id as f64),
            UnitQuaternion::from_euler_angles(0.1, 0.2, 0.3),
        )),
        place: vec![1.0, 0.0, id as f32],
        keypoints: vec![[1.0, 2.0], [3.5, 4.5]],
        descriptors: array![[1.0, 0.0], [0.0, 1.0]],
        landmark_ids: vec![10 * id, 10 * id + 1],
    }
}

/// A fresh folder for a test's map (`map.db` in it), unique to the process and `name`.
pub(crate) fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("matcha-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("map.db")
}

#[test]
fn keyframes_and_landmarks_round_trip() {
    let path = temp("roundtrip");
    {
        let mut s = MapStore::create_or_open(&path, &identity()).unwrap();
        for id in 1..=3 {
            let lms = [
                Landmark {
                    id: 10 * id,
                    position: Vector3::new(id as f64, 0.5, 4.0),
                },
                Landmark {
                    id: 10 * id + 1,
                    position: Vector3::new(0.0, id as f64, 5.0),
                },
            ];
            s.add_keyframe(&keyframe(id), &lms).unwrap();
        }
    }
    // reopened read-only, and again for writing (a mapping run that continues)
    let s = MapStore::open(&path, Some(&identity())).unwrap();
    assert_eq!(s.keyframe_count().unwrap(), 3);
    assert_eq!(s.max_ids().unwrap(), (3, 31));
    let kf = s.keyframe(2).unwrap().unwrap();
    let want = keyframe(2);
    assert_eq!(kf.keypoints, want.keypoints);
    assert_eq!(kf.descriptors, want.descriptors);
    assert_eq!(kf.landmark_ids, want.landmark_ids);
    assert_eq!(kf.camera, want.camera);
    let (got, want) = (kf.map_from_camera.unwrap(), want.map_from_camera.unwrap());
    assert!((got.translation.vector - want.translation.vector).norm() < 1e-12);
    assert!(got.rotation.angle_to(&want.rotation) < 1e-12);
    assert!(s.keyframe(9).unwrap().is_none());
    let l = s.landmarks(&[21, 99]).unwrap();
    assert_eq!(l[0], Some(Vector3::new(0.0, 2.0, 5.0)));
    assert_eq!(l[1], None);
    let places = s.place_vectors().unwrap();
    assert_eq!(
        places.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(places[2].1, vec![1.0, 0.0, 3.0]);
    s.integrity_check().unwrap();
    drop(s);
    let mut w = MapStore::create_or_open(&path, &identity()).unwrap();
    w.add_keyframe(&keyframe(4), &[]).unwrap();
    assert_eq!(w.keyframe_count().unwrap(), 4);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn another_descriptor_schema_or_file_is_refused_with_the_reason() {
    let path = temp("refuse");
    MapStore::create_or_open(&path, &identity()).unwrap();
    let mut other = identity();
    other.descriptor = "disk".into();
    other.descriptor_dim = 128;
    let e = MapStore::open(&path, Some(&other))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'xfeat'") && e.contains("'disk'"), "{e}");
    let mut other = identity();
    other.place = "mean".into();
    let e = MapStore::create_or_open(&path, &other)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("place descriptor"), "{e}");
    // a newer schema
    {
        let c = Connection::open(&path).unwrap();
        c.execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    }
    let e = MapStore::open(&path, None).err().unwrap().to_string();
    assert!(e.contains("schema version 99"), "{e}");
    // not a database / not a map / absent
    let junk = path.with_file_name("junk.db");
    std::fs::write(&junk, b"this is not sqlite at all, just some bytes").unwrap();
    assert!(MapStore::open(&junk, None).is_err());
    let json = path.with_file_name("old.json");
    std::fs::write(
        &json,
        b"{\"format\": 1, \"descriptor\": \"xfeat\", \"keyframes\": []}",
    )
    .unwrap();
    let e = MapStore::open(&json, None).err().unwrap().to_string();
    assert!(e.contains("JSON keyframe map"), "{e}");
    let foreign = path.with_file_name("foreign.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    let e = MapStore::create_or_open(&foreign, &identity())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a matcha map"), "{e}");
    assert!(MapStore::open(&path.with_file_name("absent.db"), None).is_err());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn inconsistent_keyframes_are_refused_and_nothing_is_written() {
    let path = temp("invalid");
    let mut s = MapStore::create_or_open(&path, &identity()).unwrap();
    let mut kf = keyframe(1);
    kf.landmark_ids.pop();
    assert!(matches!(
        s.add_keyframe(&kf, &[]),
        Err(StoreError::InvalidKeyframe { .. })
    ));
    let mut kf = keyframe(1);
    kf.place.push(0.0);
    assert!(s.add_keyframe(&kf, &[]).is_err());
    let mut kf = keyframe(1);
    if let Some(p) = kf.map_from_camera.as_mut() {
        p.translation.vector.x = f64::NAN;
    }
    assert!(s.add_keyframe(&kf, &[]).is_err());
    // a view (no pose) with landmark observations
    let mut kf = keyframe(1);
    kf.map_from_camera = None;
    assert!(s.add_keyframe(&kf, &[]).is_err());
    let bad_landmark = Landmark {
        id: 10,
        position: Vector3::new(f64::INFINITY, 0.0, 0.0),
    };
    assert!(s.add_keyframe(&keyframe(1), &[bad_landmark]).is_err());
    assert_eq!(s.keyframe_count().unwrap(), 0);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_damaged_row_is_reported_not_read_short() {
    let path = temp("damaged");
    let mut s = MapStore::create_or_open(&path, &identity()).unwrap();
    s.add_keyframe(&keyframe(1), &[]).unwrap();
    s.add_keyframe(&keyframe(2), &[]).unwrap();
    drop(s);
    {
        let c = Connection::open(&path).unwrap();
        // one byte more than two keypoints' coordinates; a pose one byte short
        c.execute(
            "UPDATE keyframes SET keypoints = zeroblob(17) WHERE id = 1",
            [],
        )
        .unwrap();
        c.execute("UPDATE keyframes SET pose = zeroblob(55) WHERE id = 2", [])
            .unwrap();
    }
    let s = MapStore::open(&path, Some(&identity())).unwrap();
    assert!(matches!(
        s.keyframe(1),
        Err(StoreError::Malformed { id: 1, .. })
    ));
    assert!(matches!(
        s.keyframe(2),
        Err(StoreError::Malformed { id: 2, .. })
    ));
    assert!(matches!(
        s.poses(),
        Err(StoreError::Malformed { id: 2, .. })
    ));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn an_immutable_uri_escapes_what_a_uri_means() {
    assert_eq!(
        immutable_uri(Path::new("/maps/a b%?#.db")),
        "file:/maps/a b%25%3f%23.db?immutable=1"
    );
    // and it opens a map (as it is opened on a read-only file system)
    let dir = std::env::temp_dir().join(format!("matcha-immutable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("odd %?#.db");
    let _ = std::fs::remove_file(&path);
    drop(MapStore::create_or_open(&path, &identity()).unwrap());
    let conn = Connection::open_with_flags(
        immutable_uri(&path),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    assert_eq!(MapStore::read_identity(&conn, "x").unwrap(), identity());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn view(id: u64) -> MapKeyframe {
    MapKeyframe {
        map_from_camera: None,
        landmark_ids: Vec::new(),
        ..keyframe(id)
    }
}

#[test]
fn views_are_stored_without_pose_or_landmarks_and_left_out_of_the_poses() {
    let path = temp("views");
    let mut s = MapStore::create_or_open(&path, &identity()).unwrap();
    s.add_keyframe(&keyframe(1), &[]).unwrap();
    s.add_keyframe(&view(2), &[]).unwrap();
    drop(s);
    let s = MapStore::open(&path, Some(&identity())).unwrap();
    let v = s.keyframe(2).unwrap().unwrap();
    assert!(v.map_from_camera.is_none() && v.landmark_ids.is_empty());
    assert_eq!(v.keypoints, view(2).keypoints);
    assert_eq!(v.descriptors, view(2).descriptors);
    assert_eq!(
        s.poses().unwrap().iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(s.place_vectors().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_version_1_map_is_read_as_it_is_and_upgraded_when_written() {
    let path = temp("v1");
    let mut s = MapStore::create_or_open(&path, &identity()).unwrap();
    s.add_keyframe(&keyframe(1), &[]).unwrap();
    drop(s);
    {
        // as version 1 wrote it: the pose column NOT NULL
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE k1 (id INTEGER PRIMARY KEY, stamp_ns INTEGER NOT NULL, frame_id TEXT NOT NULL, \
             camera TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, pose BLOB NOT NULL, \
             place BLOB NOT NULL, keypoints BLOB NOT NULL, descriptors BLOB NOT NULL, \
             landmark_ids BLOB NOT NULL);
             INSERT INTO k1 SELECT * FROM keyframes; DROP TABLE keyframes;
             ALTER TABLE k1 RENAME TO keyframes;
             UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let version = |p: &Path| -> String {
        Connection::open(p)
            .unwrap()
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let r = MapStore::open(&path, Some(&identity())).unwrap();
    assert!(r.keyframe(1).unwrap().unwrap().map_from_camera.is_some());
    drop(r);
    assert_eq!(version(&path), "1", "reading does not change the file");
    let mut w = MapStore::create_or_open(&path, &identity()).unwrap();
    w.add_keyframe(&view(2), &[]).unwrap();
    assert_eq!(w.keyframe_count().unwrap(), 2);
    assert!(w.keyframe(1).unwrap().unwrap().map_from_camera.is_some());
    w.integrity_check().unwrap();
    drop(w);
    assert_eq!(version(&path), SCHEMA_VERSION.to_string());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_file_opens_or_is_refused(
            head in prop_oneof![
                Just(b"SQLite format 3\0".to_vec()),
                Just(b"{\"format\": 1".to_vec()),
                Just(Vec::new()),
            ],
            body in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let path = temp("prop-file");
            std::fs::write(&path, [head, body].concat()).unwrap();
            if let Ok(s) = MapStore::open(&path, None) {
                let _ = s.keyframe_count();
                let _ = s.place_vectors();
            }
        }

        #[test]
        fn any_stored_blob_reads_or_is_reported(
            column in prop::sample::select(vec!["pose", "place", "keypoints", "descriptors", "landmark_ids"]),
            blob in proptest::collection::vec(any::<u8>(), 0..96),
            null_pose in any::<bool>(),
        ) {
            let path = temp("prop-blob");
            let mut s = MapStore::create_or_open(&path, &identity()).unwrap();
            s.add_keyframe(&keyframe(1), &[]).unwrap();
            drop(s);
            {
                let c = Connection::open(&path).unwrap();
                c.execute(&format!("UPDATE keyframes SET {column} = ?1 WHERE id = 1"), [&blob])
                    .unwrap();
                if null_pose {
                    c.execute("UPDATE keyframes SET pose = NULL WHERE id = 1", []).unwrap();
                }
            }
            let s = MapStore::open(&path, None).unwrap();
            let _ = s.keyframe(1);
            let _ = s.poses();
            let _ = s.place_vectors();
        }
    }
}
