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
}
