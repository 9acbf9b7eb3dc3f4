//! Trajectories in the TUM format (`stamp tx ty tz qx qy qz qw`, one pose per line, `#` comments), the
//! format `evo` and the TUM RGB-D tools read: written by `matcha vo`, read for ground truth.

use std::io::Write;

use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion};

/// One TUM line for `pose` at `stamp`.
pub fn tum_line(stamp: f64, pose: &Isometry3<f64>) -> String {
    let t = pose.translation.vector;
    let q = pose.rotation.quaternion();
    format!(
        "{stamp:.6} {:.9} {:.9} {:.9} {:.9} {:.9} {:.9} {:.9}",
        t.x, t.y, t.z, q.i, q.j, q.k, q.w
    )
}

/// Writes `poses` as a TUM file.
pub fn write_tum<W: Write>(out: &mut W, poses: &[(f64, Isometry3<f64>)]) -> std::io::Result<()> {
    for (stamp, pose) in poses {
        writeln!(out, "{}", tum_line(*stamp, pose))?;
    }
    Ok(())
}

/// Parses a TUM file; `Err` names the first bad line.
pub fn parse_tum(text: &str) -> Result<Vec<(f64, Isometry3<f64>)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if v.len() != 8 || !v.iter().all(|x| x.is_finite()) {
            return Err(format!("line {}: expected 8 finite numbers", n + 1));
        }
        let q = Quaternion::new(v[7], v[4], v[5], v[6]);
        if !(q.norm() > 0.5) {
            return Err(format!(
                "line {}: quaternion of norm {:.3}",
                n + 1,
                q.norm()
            ));
        }
        out.push((
            v[0],
            Isometry3::from_parts(
                Translation3::new(v[1], v[2], v[3]),
                UnitQuaternion::from_quaternion(q),
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Vector3;

    #[test]
    fn round_trips() {
        let pose = Isometry3::new(Vector3::new(1.0, -2.0, 0.5), Vector3::new(0.1, 0.2, -0.3));
        let mut buf = Vec::new();
        write_tum(&mut buf, &[(1.5, pose)]).unwrap();
        let back = parse_tum(std::str::from_utf8(&buf).unwrap()).unwrap();
        assert_eq!(back.len(), 1);
        assert!((back[0].1.translation.vector - pose.translation.vector).norm() < 1e-8);
        assert!(back[0].1.rotation.angle_to(&pose.rotation) < 1e-8);
        assert!(parse_tum("# c\n1 2 3\n").unwrap_err().contains("line 2"));
    }

    mod properties {
        use super::super::*;
        use nalgebra::{Translation3, UnitQuaternion};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_parses_or_errors(text in "[-0-9.e \\n#a-z]{0,300}") {
                if let Ok(poses) = parse_tum(&text) {
                    for (t, p) in poses {
                        prop_assert!(t.is_finite());
                        prop_assert!(p.to_homogeneous().iter().all(|v| v.is_finite()));
                    }
                }
            }

            #[test]
            fn written_poses_read_back(
                poses in prop::collection::vec(
                    (0.0f64..1e4, prop::array::uniform3(-100.0f64..100.0), prop::array::uniform3(-3.0f64..3.0)),
                    0..20),
            ) {
                let poses: Vec<(f64, Isometry3<f64>)> = poses
                    .into_iter()
                    .map(|(t, x, r)| (t, Isometry3::from_parts(Translation3::new(x[0], x[1], x[2]),
                                                               UnitQuaternion::from_euler_angles(r[0], r[1], r[2]))))
                    .collect();
                let mut out = Vec::new();
                write_tum(&mut out, &poses).unwrap();
                let back = parse_tum(std::str::from_utf8(&out).unwrap()).unwrap();
                prop_assert_eq!(back.len(), poses.len());
                for ((ta, a), (tb, b)) in poses.iter().zip(&back) {
                    prop_assert!((ta - tb).abs() < 1e-6);
                    prop_assert!((a.to_homogeneous() - b.to_homogeneous()).norm() < 1e-6);
                }
            }
        }
    }
}
