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
        map_from_camera: Isometry3::from_parts(
            Translation3::new(1.0, 2.0, id as f64),
            UnitQuaternion::from_euler_angles(0.1, 0.2, 0.3),
        ),
        place: vec![1.0, 0.0, id as f32],
        keypoints: vec![[1.0, 2.0], [3.5, 4.5]],
        descriptors: array![[1.0, 0.0], [0.0, 1.0]],
        landmark_ids: vec![10 * id, 10 * id + 1],
    }
}

fn temp(name: &str) -> std::path::PathBuf {
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
    assert!(
        (kf.map_from_camera.translation.vector - want.map_from_camera.translation.vector).norm()
            < 1e-12
    );
    assert!(
        kf.map_from_camera
            .rotation
            .angle_to(&want.map_from_camera.rotation)
            < 1e-12
    );
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
    kf.map_from_camera.translation.vector.x = f64::NAN;
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
