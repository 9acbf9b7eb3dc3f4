//! Pinhole camera with radial-tangential ("plumb_bob") lens distortion.
//!
//! The model is the one of OpenCV and of ROS `sensor_msgs/CameraInfo` with `distortion_model = plumb_bob`:
//! a point `(X, Y, Z)` in the camera's optical frame (z forward, x right, y down) projects to normalised
//! coordinates `(x, y) = (X/Z, Y/Z)`, is distorted by
//!
//! ```text
//! r² = x² + y²,   radial = 1 + k1·r² + k2·r⁴ + k3·r⁶
//! x_d = x·radial + 2·p1·x·y + p2·(r² + 2x²)
//! y_d = y·radial + p1·(r² + 2y²) + 2·p2·x·y
//! ```
//!
//! and lands at pixel `(u, v) = (fx·x_d + cx, fy·y_d + cy)`. Pixel centres are at integer coordinates (the
//! centre of the top-left pixel is `(0, 0)`, OpenCV's convention), so resizing an image by `s` maps a
//! principal point `c` to `(c + 0.5)·s − 0.5`; [`PinholeCamera::scaled`] does that.
//!
//! Undistortion has no closed form. [`PinholeCamera::normalize`] inverts the distortion with Gauss-Newton on
//! the 2×2 forward map, started at the distorted point; it converges quadratically wherever the forward map is
//! locally invertible (the whole useful field of view of real lenses), unlike the fixed-point iteration of
//! OpenCV's `undistortPoints`, which converges only linearly and may stall for strong distortion. A point where
//! the iteration does not converge is reported, never silently mapped somewhere.
//!
//! This module does not model fisheye or rational (8-coefficient) lenses and knows nothing of images.

/// Errors of the camera model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CameraError {
    /// A focal length is zero, negative or not finite.
    #[error("invalid focal length fx={fx}, fy={fy}: both must be finite and > 0 (pixels)")]
    InvalidFocalLength {
        /// Horizontal focal length.
        fx: f64,
        /// Vertical focal length.
        fy: f64,
    },
    /// The principal point is not finite.
    #[error("invalid principal point cx={cx}, cy={cy}: both must be finite (pixels)")]
    InvalidPrincipalPoint {
        /// Horizontal principal point.
        cx: f64,
        /// Vertical principal point.
        cy: f64,
    },
    /// A distortion coefficient is not finite.
    #[error("invalid distortion coefficients {0:?}: all must be finite")]
    InvalidDistortion([f64; 5]),
    /// The distortion coefficient list has an unsupported length.
    #[error(
        "unsupported distortion coefficient count {0}: expected 0, 4 (k1,k2,p1,p2) or 5 (k1,k2,p1,p2,k3) \
         for plumb_bob"
    )]
    UnsupportedDistortionLength(usize),
    /// A resize factor is zero, negative or not finite.
    #[error("invalid image scale factors sx={sx}, sy={sy}: both must be finite and > 0")]
    InvalidScale {
        /// Horizontal factor.
        sx: f64,
        /// Vertical factor.
        sy: f64,
    },
    /// A pixel coordinate is not finite.
    #[error("non-finite pixel coordinate ({0}, {1})")]
    NonFinitePixel(f64, f64),
    /// Iterative undistortion did not converge for this pixel (it lies outside the region where the lens
    /// model is invertible).
    #[error("undistortion did not converge for pixel ({0}, {1}): outside the valid region of the lens model")]
    UndistortionFailed(f64, f64),
}

/// Radial-tangential lens distortion (OpenCV / ROS `plumb_bob`), coefficients in OpenCV order.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Distortion {
    /// Radial coefficient of r².
    pub k1: f64,
    /// Radial coefficient of r⁴.
    pub k2: f64,
    /// First tangential coefficient.
    pub p1: f64,
    /// Second tangential coefficient.
    pub p2: f64,
    /// Radial coefficient of r⁶.
    pub k3: f64,
}

impl Distortion {
    /// No distortion (all coefficients zero).
    pub const fn none() -> Self {
        Self {
            k1: 0.0,
            k2: 0.0,
            p1: 0.0,
            p2: 0.0,
            k3: 0.0,
        }
    }

    /// From a coefficient list in OpenCV order, as in `CameraInfo.d`: empty (no distortion), 4 values
    /// `(k1, k2, p1, p2)` or 5 values `(k1, k2, p1, p2, k3)`.
    pub fn from_slice(d: &[f64]) -> Result<Self, CameraError> {
        let c = match d.len() {
            0 => [0.0; 5],
            4 => [d[0], d[1], d[2], d[3], 0.0],
            5 => [d[0], d[1], d[2], d[3], d[4]],
            n => return Err(CameraError::UnsupportedDistortionLength(n)),
        };
        if c.iter().any(|v| !v.is_finite()) {
            return Err(CameraError::InvalidDistortion(c));
        }
        Ok(Self {
            k1: c[0],
            k2: c[1],
            p1: c[2],
            p2: c[3],
            k3: c[4],
        })
    }

    /// Coefficients in OpenCV order `(k1, k2, p1, p2, k3)`.
    pub fn coefficients(&self) -> [f64; 5] {
        [self.k1, self.k2, self.p1, self.p2, self.k3]
    }

    /// True when all coefficients are zero.
    pub fn is_none(&self) -> bool {
        self.coefficients().iter().all(|&c| c == 0.0)
    }

    /// Applies the distortion to undistorted normalised coordinates.
    pub fn distort(&self, p: [f64; 2]) -> [f64; 2] {
        let [x, y] = p;
        let (x2, y2, xy) = (x * x, y * y, x * y);
        let r2 = x2 + y2;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        [
            x * radial + 2.0 * self.p1 * xy + self.p2 * (r2 + 2.0 * x2),
            y * radial + self.p1 * (r2 + 2.0 * y2) + 2.0 * self.p2 * xy,
        ]
    }

    /// The distorted point and the 2×2 Jacobian `∂distort/∂(x, y)` (row-major).
    fn distort_with_jacobian(&self, p: [f64; 2]) -> ([f64; 2], [[f64; 2]; 2]) {
        let [x, y] = p;
        let (x2, y2, xy) = (x * x, y * y, x * y);
        let r2 = x2 + y2;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        // d(radial)/d(r²)
        let dradial = self.k1 + r2 * (2.0 * self.k2 + 3.0 * r2 * self.k3);
        let d = [
            x * radial + 2.0 * self.p1 * xy + self.p2 * (r2 + 2.0 * x2),
            y * radial + self.p1 * (r2 + 2.0 * y2) + 2.0 * self.p2 * xy,
        ];
        let j = [
            [
                radial + 2.0 * x2 * dradial + 2.0 * self.p1 * y + 6.0 * self.p2 * x,
                2.0 * xy * dradial + 2.0 * self.p1 * x + 2.0 * self.p2 * y,
            ],
            [
                2.0 * xy * dradial + 2.0 * self.p1 * x + 2.0 * self.p2 * y,
                radial + 2.0 * y2 * dradial + 6.0 * self.p1 * y + 2.0 * self.p2 * x,
            ],
        ];
        (d, j)
    }

    /// Inverts [`Self::distort`] by Gauss-Newton; `None` when it does not converge.
    pub fn undistort(&self, pd: [f64; 2]) -> Option<[f64; 2]> {
        if self.is_none() {
            return Some(pd);
        }
        const MAX_ITERATIONS: usize = 30;
        const TOLERANCE: f64 = 1e-14;
        let mut p = pd;
        for _ in 0..MAX_ITERATIONS {
            let (d, j) = self.distort_with_jacobian(p);
            let (ex, ey) = (d[0] - pd[0], d[1] - pd[1]);
            let det = j[0][0] * j[1][1] - j[0][1] * j[1][0];
            if !det.is_finite() || det.abs() < 1e-12 {
                return None;
            }
            let dx = (j[1][1] * ex - j[0][1] * ey) / det;
            let dy = (j[0][0] * ey - j[1][0] * ex) / det;
            p = [p[0] - dx, p[1] - dy];
            if !(p[0].is_finite() && p[1].is_finite()) {
                return None;
            }
            if dx * dx + dy * dy < TOLERANCE * TOLERANCE * (1.0 + p[0] * p[0] + p[1] * p[1]) {
                // Accept only a true inverse (guards against stalling at a fold of the map).
                let d = self.distort(p);
                let err = ((d[0] - pd[0]).powi(2) + (d[1] - pd[1]).powi(2)).sqrt();
                return (err < 1e-9 * (1.0 + pd[0].abs() + pd[1].abs())).then_some(p);
            }
        }
        None
    }
}

/// A pinhole camera: intrinsics in pixels plus radial-tangential distortion.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PinholeCamera {
    /// Horizontal focal length, pixels.
    pub fx: f64,
    /// Vertical focal length, pixels.
    pub fy: f64,
    /// Principal point x, pixels (pixel centres at integers).
    pub cx: f64,
    /// Principal point y, pixels (pixel centres at integers).
    pub cy: f64,
    /// Lens distortion.
    pub distortion: Distortion,
}

impl PinholeCamera {
    /// A distortion-free camera. Focal lengths must be finite and positive, the principal point finite.
    pub fn new(fx: f64, fy: f64, cx: f64, cy: f64) -> Result<Self, CameraError> {
        let cam = Self {
            fx,
            fy,
            cx,
            cy,
            distortion: Distortion::none(),
        };
        cam.validate()?;
        Ok(cam)
    }

    /// From a row-major 3×3 intrinsic matrix `K` (as `CameraInfo.k`) and a plumb_bob coefficient list
    /// (as `CameraInfo.d`, see [`Distortion::from_slice`]). Skew is ignored.
    pub fn from_k(k: &[f64; 9], d: &[f64]) -> Result<Self, CameraError> {
        Self::new(k[0], k[4], k[2], k[5])?.with_distortion(Distortion::from_slice(d)?)
    }

    /// The same camera with the given distortion (coefficients must be finite).
    pub fn with_distortion(mut self, distortion: Distortion) -> Result<Self, CameraError> {
        if distortion.coefficients().iter().any(|c| !c.is_finite()) {
            return Err(CameraError::InvalidDistortion(distortion.coefficients()));
        }
        self.distortion = distortion;
        Ok(self)
    }

    /// Checks the invariants (useful after editing the public fields).
    pub fn validate(&self) -> Result<(), CameraError> {
        if !(self.fx.is_finite() && self.fy.is_finite() && self.fx > 0.0 && self.fy > 0.0) {
            return Err(CameraError::InvalidFocalLength {
                fx: self.fx,
                fy: self.fy,
            });
        }
        if !(self.cx.is_finite() && self.cy.is_finite()) {
            return Err(CameraError::InvalidPrincipalPoint {
                cx: self.cx,
                cy: self.cy,
            });
        }
        let c = self.distortion.coefficients();
        if c.iter().any(|v| !v.is_finite()) {
            return Err(CameraError::InvalidDistortion(c));
        }
        Ok(())
    }

    /// The camera of the same lens after resizing the image by `(sx, sy)` (new size = old size × s).
    /// With pixel centres at integers, `f' = f·s` and `c' = (c + 0.5)·s − 0.5`. Distortion acts on normalised
    /// coordinates and is unchanged.
    pub fn scaled(&self, sx: f64, sy: f64) -> Result<Self, CameraError> {
        if !(sx.is_finite() && sy.is_finite() && sx > 0.0 && sy > 0.0) {
            return Err(CameraError::InvalidScale { sx, sy });
        }
        Ok(Self {
            fx: self.fx * sx,
            fy: self.fy * sy,
            cx: (self.cx + 0.5) * sx - 0.5,
            cy: (self.cy + 0.5) * sy - 0.5,
            distortion: self.distortion,
        })
    }

    /// Undistorted normalised coordinates `(X/Z, Y/Z)` of a pixel, or an error when the pixel is not finite
    /// or undistortion does not converge.
    pub fn try_normalize(&self, px: [f64; 2]) -> Result<[f64; 2], CameraError> {
        if !(px[0].is_finite() && px[1].is_finite()) {
            return Err(CameraError::NonFinitePixel(px[0], px[1]));
        }
        let pd = [(px[0] - self.cx) / self.fx, (px[1] - self.cy) / self.fy];
        self.distortion
            .undistort(pd)
            .ok_or(CameraError::UndistortionFailed(px[0], px[1]))
    }

    /// Undistorted normalised coordinates `(X/Z, Y/Z)` of a pixel (iterative undistortion). Returns
    /// `[NaN, NaN]` where [`Self::try_normalize`] fails; use that to learn why.
    pub fn normalize(&self, px: [f64; 2]) -> [f64; 2] {
        self.try_normalize(px).unwrap_or([f64::NAN, f64::NAN])
    }

    /// Pixel of undistorted normalised coordinates (applies distortion, then `K`).
    pub fn denormalize(&self, p: [f64; 2]) -> [f64; 2] {
        let d = self.distortion.distort(p);
        [self.fx * d[0] + self.cx, self.fy * d[1] + self.cy]
    }

    /// Pixel of a 3-D point in the camera's optical frame; `None` when the point is not in front of the
    /// camera (`Z ≤ 0` or non-finite).
    pub fn project(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        if !(p[2] > 0.0 && p.iter().all(|v| v.is_finite())) {
            return None;
        }
        Some(self.denormalize([p[0] / p[2], p[1] / p[2]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens() -> Distortion {
        Distortion {
            k1: -0.28,
            k2: 0.07,
            p1: 0.0012,
            p2: -0.0009,
            k3: -0.01,
        }
    }

    #[test]
    fn new_validates() {
        assert!(PinholeCamera::new(500.0, 500.0, 320.0, 240.0).is_ok());
        for (fx, fy) in [
            (0.0, 1.0),
            (-1.0, 1.0),
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
        ] {
            let e = PinholeCamera::new(fx, fy, 0.0, 0.0).unwrap_err();
            assert!(matches!(e, CameraError::InvalidFocalLength { .. }));
            assert!(e.to_string().contains("must be finite and > 0"));
        }
        assert!(matches!(
            PinholeCamera::new(1.0, 1.0, f64::NAN, 0.0),
            Err(CameraError::InvalidPrincipalPoint { .. })
        ));
        let cam = PinholeCamera::new(1.0, 1.0, 0.0, 0.0).unwrap();
        let mut bad = lens();
        bad.k2 = f64::NAN;
        assert!(cam.with_distortion(bad).is_err());
        assert!(Distortion::from_slice(&[0.1, 0.2, 0.3]).is_err());
        assert_eq!(
            Distortion::from_slice(&[0.1, 0.2, 0.3, 0.4])
                .unwrap()
                .coefficients(),
            [0.1, 0.2, 0.3, 0.4, 0.0]
        );
    }

    #[test]
    fn scaled_keeps_pixel_centres() {
        // A 640×480 camera resized to 320×240: the centre of the image (319.5, 239.5) maps to (159.5, 119.5),
        // and pixel 0's centre stays at the left edge's half-pixel.
        let cam = PinholeCamera::new(500.0, 400.0, 319.5, 239.5).unwrap();
        let half = cam.scaled(0.5, 0.5).unwrap();
        assert_eq!((half.fx, half.fy), (250.0, 200.0));
        assert!((half.cx - 159.5).abs() < 1e-12 && (half.cy - 119.5).abs() < 1e-12);
        let c = PinholeCamera::new(500.0, 500.0, 10.0, 20.0)
            .unwrap()
            .scaled(2.0, 3.0)
            .unwrap();
        assert!((c.cx - 20.5).abs() < 1e-12 && (c.cy - 61.0).abs() < 1e-12);
        // A 3-D point lands on the same physical spot: the pixel maps by u' = (u + 0.5)·s − 0.5.
        let p = [0.3, -0.2, 2.0];
        let (u, u2) = (cam.project(p).unwrap(), half.project(p).unwrap());
        assert!((u2[0] - ((u[0] + 0.5) * 0.5 - 0.5)).abs() < 1e-9);
        assert!((u2[1] - ((u[1] + 0.5) * 0.5 - 0.5)).abs() < 1e-9);
        assert!(cam.scaled(0.0, 1.0).is_err());
        assert!(cam.scaled(1.0, f64::NAN).is_err());
    }

    #[test]
    fn normalize_inverts_project_with_distortion() {
        let cam = PinholeCamera::new(520.0, 515.0, 318.2, 243.9)
            .unwrap()
            .with_distortion(lens())
            .unwrap();
        let mut worst: f64 = 0.0;
        for i in 0..41 {
            for j in 0..31 {
                let x = -0.6 + 1.2 * i as f64 / 40.0;
                let y = -0.45 + 0.9 * j as f64 / 30.0;
                let px = cam.project([x, y, 1.0]).unwrap();
                let back = cam.try_normalize(px).unwrap();
                worst = worst.max((back[0] - x).abs()).max((back[1] - y).abs());
            }
        }
        assert!(worst < 1e-10, "round trip error {worst}");
        // Without distortion normalisation is just K⁻¹.
        let pin = PinholeCamera::new(500.0, 250.0, 100.0, 50.0).unwrap();
        assert_eq!(pin.normalize([600.0, 300.0]), [1.0, 1.0]);
    }

    #[test]
    fn normalize_reports_failures() {
        let cam = PinholeCamera::new(500.0, 500.0, 320.0, 240.0)
            .unwrap()
            .with_distortion(Distortion {
                k1: -0.5,
                ..Distortion::none()
            })
            .unwrap();
        // With k1 = −0.5 the radial map r(1 − 0.5 r²) peaks at r_d ≈ 0.544: farther pixels have no preimage.
        assert!(matches!(
            cam.try_normalize([320.0 + 500.0 * 0.8, 240.0]),
            Err(CameraError::UndistortionFailed(..))
        ));
        assert!(cam.normalize([f64::NAN, 0.0])[0].is_nan());
        assert!(cam.project([0.0, 0.0, -1.0]).is_none());
    }
}
