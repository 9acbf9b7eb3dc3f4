//! A buffer of static transforms (what `/tf_static` carries) and lookups between any two connected frames.
//!
//! The node needs two facts from the robot's TF tree, both static: the camera's mounting (base frame →
//! left camera optical frame) and, for stereo rigs published as two frames, the left → right camera
//! transform. tf2 itself is not available on every install path (no PyPI wheel), and these lookups need no
//! time interpolation, so the buffer is this small tree: each child has one parent (as in tf2; a newer
//! transform for a child replaces the older), and a lookup walks both frames up to their common root.
//!
//! Frame names are compared without a leading `/` (tf2's convention). Dynamic `/tf` is not read: odometry
//! does not need it. This module knows nothing of r2r.

use std::collections::HashMap;

use nalgebra::Isometry3;

/// Longest chain followed (a guard against cycles in malformed input).
pub const MAX_DEPTH: usize = 64;

/// Why a transform was not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TfError {
    /// Empty frame name, or a frame that is its own parent.
    #[error("transform {parent:?} → {child:?}: {reason}")]
    Invalid {
        /// Parent frame.
        parent: String,
        /// Child frame.
        child: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Static transforms by child frame.
#[derive(Debug, Clone, Default)]
pub struct TransformBuffer {
    parent_of: HashMap<String, (String, Isometry3<f64>)>,
}

fn norm(name: &str) -> &str {
    name.trim_start_matches('/')
}

impl TransformBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames with a parent.
    pub fn len(&self) -> usize {
        self.parent_of.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.parent_of.is_empty()
    }

    /// Stores `parent_from_child` (a `geometry_msgs/TransformStamped` with `header.frame_id = parent`,
    /// `child_frame_id = child`). Rejects empty names, self-loops and non-finite values; a transform that
    /// would close a cycle is rejected too.
    pub fn set(
        &mut self,
        parent: &str,
        child: &str,
        parent_from_child: Isometry3<f64>,
    ) -> Result<(), TfError> {
        let (p, c) = (norm(parent), norm(child));
        let bad = |reason| {
            Err(TfError::Invalid {
                parent: parent.to_string(),
                child: child.to_string(),
                reason,
            })
        };
        if p.is_empty() || c.is_empty() {
            return bad("empty frame name");
        }
        if p == c {
            return bad("a frame cannot be its own parent");
        }
        if !parent_from_child
            .to_homogeneous()
            .iter()
            .all(|v| v.is_finite())
        {
            return bad("non-finite transform");
        }
        if self.chain(p).iter().any(|(f, _)| f == c) {
            return bad("the transform would close a cycle");
        }
        self.parent_of
            .insert(c.to_string(), (p.to_string(), parent_from_child));
        Ok(())
    }

    /// `target_from_source`: maps coordinates in `source` to `target`; `None` when the frames are not
    /// connected.
    pub fn lookup(&self, target: &str, source: &str) -> Option<Isometry3<f64>> {
        let (t, s) = (norm(target), norm(source));
        if t.is_empty() || s.is_empty() {
            return None;
        }
        if t == s {
            return Some(Isometry3::identity());
        }
        let up_s = self.chain(s);
        let up_t = self.chain(t);
        // the first ancestor of the source that is also an ancestor of the target
        for (frame, root_from_source) in &up_s {
            if let Some((_, root_from_target)) = up_t.iter().find(|(f, _)| f == frame) {
                return Some(root_from_target.inverse() * root_from_source);
            }
        }
        None
    }

    /// The frame and its ancestors, each with `ancestor_from_frame`.
    fn chain(&self, frame: &str) -> Vec<(String, Isometry3<f64>)> {
        let mut out = vec![(frame.to_string(), Isometry3::identity())];
        let mut current = frame.to_string();
        let mut acc = Isometry3::identity();
        while let Some((parent, parent_from_child)) = self.parent_of.get(&current) {
            if out.len() > MAX_DEPTH {
                break;
            }
            acc = parent_from_child * acc;
            out.push((parent.clone(), acc));
            current = parent.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion, Vector3};

    fn iso(x: f64, y: f64, z: f64, yaw: f64) -> Isometry3<f64> {
        Isometry3::from_parts(
            Translation3::new(x, y, z),
            UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw),
        )
    }

    fn close(a: &Isometry3<f64>, b: &Isometry3<f64>) -> bool {
        (a.to_homogeneous() - b.to_homogeneous()).norm() < 1e-12
    }

    #[test]
    fn chains_and_siblings_resolve() {
        let mut tf = TransformBuffer::new();
        let base_cam = iso(0.2, 0.0, 0.5, 0.0);
        let cam_left = iso(0.0, 0.06, 0.0, 0.1);
        let cam_right = iso(0.0, -0.06, 0.0, 0.1);
        tf.set("base_link", "camera_link", base_cam).unwrap();
        tf.set("/camera_link", "left_optical", cam_left).unwrap();
        tf.set("camera_link", "right_optical", cam_right).unwrap();
        let got = tf.lookup("base_link", "left_optical").unwrap();
        assert!(close(&got, &(base_cam * cam_left)));
        // siblings through their common parent: right_from_left
        let rl = tf.lookup("right_optical", "left_optical").unwrap();
        assert!(close(&rl, &(cam_right.inverse() * cam_left)));
        assert!((rl.translation.vector.norm() - 0.12).abs() < 1e-12);
        // the reverse direction is the inverse
        let base_from_left = tf.lookup("/base_link", "left_optical").unwrap();
        let left_from_base = tf.lookup("left_optical", "base_link").unwrap();
        assert!(close(&base_from_left.inverse(), &left_from_base));
        assert!(close(&tf.lookup("x", "x").unwrap(), &Isometry3::identity()));
        assert!(tf.lookup("base_link", "elsewhere").is_none());
    }

    #[test]
    fn a_newer_transform_replaces_the_older_and_bad_ones_are_refused() {
        let mut tf = TransformBuffer::new();
        tf.set("base_link", "cam", iso(1.0, 0.0, 0.0, 0.0)).unwrap();
        tf.set("base_link", "cam", iso(2.0, 0.0, 0.0, 0.0)).unwrap();
        assert_eq!(tf.len(), 1);
        let got = tf.lookup("base_link", "cam").unwrap();
        assert!((got.translation.x - 2.0).abs() < 1e-12);
        assert!(tf.set("", "cam", Isometry3::identity()).is_err());
        assert!(tf.set("cam", "cam", Isometry3::identity()).is_err());
        assert!(
            tf.set("cam", "base_link", Isometry3::identity()).is_err(),
            "cycle"
        );
        assert!(tf.set("a", "b", iso(f64::NAN, 0.0, 0.0, 0.0)).is_err());
        assert_eq!(tf.len(), 1);
    }

    mod properties {
        use super::super::*;
        use nalgebra::{Translation3, UnitQuaternion};
        use proptest::prelude::*;

        fn frame() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "base", "/base", "cam", "cam_r", "map", "odom", "", "/",
            ])
            .prop_map(str::to_string)
        }

        proptest! {
            #[test]
            fn any_transforms_keep_the_buffer_consistent(
                edges in prop::collection::vec(
                    (frame(), frame(), prop::array::uniform3(-5.0f64..5.0), prop::array::uniform3(-3.0f64..3.0)),
                    0..12),
                a in frame(), b in frame(),
            ) {
                let mut buf = TransformBuffer::new();
                for (p, c, x, r) in &edges {
                    let iso = Isometry3::from_parts(Translation3::new(x[0], x[1], x[2]),
                                                    UnitQuaternion::from_euler_angles(r[0], r[1], r[2]));
                    let _ = buf.set(p, c, iso);
                }
                match (buf.lookup(&a, &b), buf.lookup(&b, &a)) {
                    (Some(ab), Some(ba)) => {
                        prop_assert!((ab * ba).to_homogeneous().iter().zip(Isometry3::<f64>::identity().to_homogeneous().iter())
                            .all(|(u, v)| (u - v).abs() < 1e-9));
                    }
                    (None, None) => {}
                    _ => prop_assert!(false, "lookup one way but not the other"),
                }
            }
        }
    }
}
