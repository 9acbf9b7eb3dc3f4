//! Tracker tests on synthetic video with exact truth: a textured plane translating, a textured occluder
//! passing over the tracked points, frames of the wrong size, bad queries.

use image::GrayImage;
use ndarray::Array3;

use super::*;
use crate::features::DenseDescriptors;

const W: u32 = 320;
const H: u32 = 240;

/// Smooth value noise: hashed lattice values every 5 px, bilinearly interpolated (not periodic).
fn noise(x: f32, y: f32) -> f32 {
    let h = |i: i32, j: i32| -> f32 {
        let mut v = (i as u32).wrapping_mul(0x9E37_79B1) ^ (j as u32).wrapping_mul(0x85EB_CA77);
        v ^= v >> 15;
        v = v.wrapping_mul(0x2C1B_3C6D);
        v ^= v >> 12;
        (v & 0xFFFF) as f32 / 65535.0
    };
    let (u, v) = (x / 5.0, y / 5.0);
    let (i, j) = (u.floor() as i32, v.floor() as i32);
    let (s, t) = (u - i as f32, v - j as f32);
    let (s, t) = (s * s * (3.0 - 2.0 * s), t * t * (3.0 - 2.0 * t));
    (1.0 - t) * ((1.0 - s) * h(i, j) + s * h(i + 1, j))
        + t * ((1.0 - s) * h(i, j + 1) + s * h(i + 1, j + 1))
}

/// Background texture value at continuous position (x, y) of the plane.
fn background(x: f32, y: f32) -> f32 {
    60.0 + 140.0 * noise(x, y) + 20.0 * (0.05 * x + 0.02 * y).sin()
}

fn occluder_texture(x: f32, y: f32) -> f32 {
    110.0 + 60.0 * ((0.5 * x).sin() * (0.45 * y).cos())
}

/// Frame `k`: the plane moved by `k·motion`, and an occluder square (side 60) whose left edge is at
/// `occluder_x(k)` over rows 70..130.
fn frame(k: usize, motion: [f32; 2], occluder_x: impl Fn(usize) -> f32) -> GrayImage {
    let (ox, oy) = (k as f32 * motion[0], k as f32 * motion[1]);
    let left = occluder_x(k);
    GrayImage::from_fn(W, H, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let v = if xf >= left && xf < left + 60.0 && (70.0..130.0).contains(&yf) {
            occluder_texture(xf - left, yf - 70.0)
        } else {
            background(xf - ox, yf - oy)
        };
        image::Luma([v.clamp(0.0, 255.0).round() as u8])
    })
}

/// A stand-in for an engine's dense map: per 8×8 cell, 8×8 samples at a stride of 3 px (a 24 px window
/// centred on the cell) of the 7×7 box-blurred image, zero-mean; cells normalised. Smooth enough to tolerate
/// a few pixels of shift, like a learned descriptor.
fn block_descriptors(img: &GrayImage) -> DenseDescriptors {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let px = |x: i32, y: i32| {
        img.get_pixel(x.clamp(0, w - 1) as u32, y.clamp(0, h - 1) as u32)
            .0[0] as f32
    };
    let blur = |x: i32, y: i32| {
        (-3..=3)
            .flat_map(|dy| (-3..=3).map(move |dx| (dx, dy)))
            .map(|(dx, dy)| px(x + dx, y + dy))
            .sum::<f32>()
            / 49.0
    };
    let (mw, mh) = ((w / 8) as usize, (h / 8) as usize);
    let mut m = Array3::<f32>::zeros((64, mh, mw));
    for cy in 0..mh {
        for cx in 0..mw {
            let mut v = [0f32; 64];
            for (k, e) in v.iter_mut().enumerate() {
                let sx = 8 * cx as i32 + 4 + 3 * (k % 8) as i32 - 11;
                let sy = 8 * cy as i32 + 4 + 3 * (k / 8) as i32 - 11;
                *e = blur(sx, sy);
            }
            let mean = v.iter().sum::<f32>() / 64.0;
            for (k, e) in v.iter().enumerate() {
                m[[k, cy, cx]] = e - mean;
            }
        }
    }
    // cell (cx, cy) is centred at pixel 8cx + 3.5 (its samples span 8cx + 4 - 11 .. 8cx + 4 + 10)
    DenseDescriptors::from_chw(
        m.view(),
        [img.width(), img.height()],
        [0.125, 0.125],
        [-3.5 / 8.0, -3.5 / 8.0],
    )
}

fn track_frame(img: GrayImage) -> TrackFrame {
    let d = block_descriptors(&img);
    TrackFrame::new(img, d, 4).unwrap()
}

#[test]
fn follows_a_translating_plane_to_subpixel() {
    let motion = [2.7f32, 1.3];
    let mut t = Tracker::new(TrackOptions::default()).unwrap();
    let queries = [[60.0f32, 50.0], [200.5, 150.25], [120.0, 180.0]];
    for q in queries {
        t.add_query(Query {
            frame: 0,
            x: q[0],
            y: q[1],
        })
        .unwrap();
    }
    for k in 0..20 {
        let out = t.step(track_frame(frame(k, motion, |_| -1000.0))).unwrap();
        for (q, p) in queries.iter().zip(&out) {
            let p = p.expect("started on frame 0");
            let want = [q[0] + k as f32 * motion[0], q[1] + k as f32 * motion[1]];
            assert!(p.visible, "frame {k}: lost");
            let err = (p.position[0] - want[0]).hypot(p.position[1] - want[1]);
            assert!(err < 0.3, "frame {k}: error {err} px at {:?}", p.position);
        }
    }
}

#[test]
fn occlusion_is_flagged_and_the_point_reacquired() {
    // a static plane; the occluder slides right 12 px per frame and covers x = 150 on frames ~8..13
    let occ = |k: usize| 40.0 + 12.0 * k as f32;
    let q = [150.0f32, 100.0];
    let mut t = Tracker::new(TrackOptions::default()).unwrap();
    t.add_query(Query {
        frame: 0,
        x: q[0],
        y: q[1],
    })
    .unwrap();
    let mut flags = Vec::new();
    for k in 0..24 {
        let out = t.step(track_frame(frame(k, [0.0, 0.0], occ))).unwrap();
        let p = out[0].unwrap();
        // covered when the point (with the patch radius around it) is under the square
        let left = occ(k);
        let covered = q[0] >= left && q[0] < left + 60.0;
        let clear = q[0] + 10.0 < left || q[0] - 10.0 >= left + 60.0;
        if covered {
            assert!(
                !p.visible,
                "frame {k}: reported visible under the occluder at {:?}",
                p.position
            );
        }
        if clear && k > 0 {
            flags.push((k, p.visible));
            if p.visible {
                let err = (p.position[0] - q[0]).hypot(p.position[1] - q[1]);
                assert!(err < 0.5, "frame {k}: error {err}");
            }
        }
    }
    // visible before the occluder arrives and re-acquired once it has passed
    let after: Vec<_> = flags.iter().filter(|(k, _)| *k > 15).collect();
    assert!(
        !after.is_empty() && after.iter().all(|(_, v)| *v),
        "{flags:?}"
    );
}

#[test]
fn queries_and_frames_are_checked() {
    let mut t = Tracker::new(TrackOptions::default()).unwrap();
    assert!(t
        .add_query(Query {
            frame: 0,
            x: f32::NAN,
            y: 1.0
        })
        .is_err());
    t.add_query(Query {
        frame: 1,
        x: 5000.0,
        y: 10.0,
    })
    .unwrap();
    t.step(track_frame(frame(0, [0.0, 0.0], |_| -1000.0)))
        .unwrap();
    // a query on a processed frame
    assert!(t
        .add_query(Query {
            frame: 0,
            x: 10.0,
            y: 10.0
        })
        .is_err());
    // the query of frame 1 is outside the image: refused, nothing changes
    let err = t
        .step(track_frame(frame(1, [0.0, 0.0], |_| -1000.0)))
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    assert_eq!(t.frames_seen(), 1);
    // a frame of another size
    let small = GrayImage::from_pixel(160, 120, image::Luma([90]));
    let err = t.step(track_frame(small)).unwrap_err();
    assert!(err.to_string().contains("160×120"), "{err}");
    // a map of another image size
    let img = frame(0, [0.0, 0.0], |_| -1000.0);
    let d = block_descriptors(&GrayImage::new(64, 64));
    assert!(TrackFrame::new(img, d, 3).is_err());
    // bad options
    let o = TrackOptions {
        min_zncc: 2.0,
        ..TrackOptions::default()
    };
    assert!(matches!(
        Tracker::new(o),
        Err(TrackError::Options {
            key: "min_zncc",
            ..
        })
    ));
}

#[test]
fn nearest_neighbour_baseline_finds_the_cell() {
    let motion = [8.0f32, 0.0]; // whole cells: block descriptors repeat exactly
    let mut b = NearestNeighbourTracker::new(0.5);
    b.add_query(Query {
        frame: 0,
        x: 59.5,
        y: 51.5,
    })
    .unwrap();
    for k in 0..5 {
        let img = frame(k, motion, |_| -1000.0);
        let out = b.step(&block_descriptors(&img)).unwrap();
        let p = out[0].unwrap();
        assert!(p.visible);
        assert!(
            (p.position[0] - (59.5 + 8.0 * k as f32)).abs() < 4.0,
            "{k}: {:?}",
            p.position
        );
    }
}

#[test]
fn threads_do_not_change_the_result() {
    let run = |threads: usize| {
        let mut t = Tracker::new(TrackOptions {
            threads,
            ..TrackOptions::default()
        })
        .unwrap();
        for k in 0..24 {
            let (x, y) = (
                30.0 + 11.0 * (k % 6) as f32 + 7.0 * k as f32,
                40.0 + 6.5 * (k / 6) as f32 * 5.0,
            );
            t.add_query(Query { frame: k % 3, x, y }).unwrap();
        }
        let occ = |k: usize| 20.0 + 15.0 * k as f32;
        (0..10)
            .map(|k| t.step(track_frame(frame(k, [1.7, -0.6], occ))).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(4));
}

#[test]
fn a_blank_frame_shows_nothing() {
    // the camera is covered: whatever the descriptors of a black frame say, the point is not seen
    let mut t = Tracker::new(TrackOptions::default()).unwrap();
    t.add_query(Query {
        frame: 0,
        x: 150.0,
        y: 100.0,
    })
    .unwrap();
    t.step(track_frame(frame(0, [0.0, 0.0], |_| -1000.0)))
        .unwrap();
    for _ in 0..3 {
        let black = GrayImage::from_pixel(W, H, image::Luma([0]));
        let p = t.step(track_frame(black)).unwrap()[0].unwrap();
        assert!(!p.visible && p.confidence == 0.0, "{p:?}");
    }
    // and it comes back when the view does
    let p = t
        .step(track_frame(frame(4, [0.0, 0.0], |_| -1000.0)))
        .unwrap()[0]
        .unwrap();
    assert!(
        p.visible && (p.position[0] - 150.0).hypot(p.position[1] - 100.0) < 0.5,
        "{p:?}"
    );
}

#[test]
fn points_started_on_the_latest_frame_track_as_queries_given_in_advance() {
    // the live entry point (the node's `track` service) must give what the folder entry point gives
    let motion = [2.7f32, 1.3];
    let queries = [[60.0f32, 50.0], [200.5, 150.25]];
    let mut ahead = Tracker::new(TrackOptions::default()).unwrap();
    for q in queries {
        ahead
            .add_query(Query {
                frame: 2,
                x: q[0],
                y: q[1],
            })
            .unwrap();
    }
    let mut live = Tracker::new(TrackOptions::default()).unwrap();
    // the stream starts with no points: the live tracker only keeps the newest frame
    for k in 0..3 {
        ahead
            .step(track_frame(frame(k, motion, |_| -1000.0)))
            .unwrap();
        live.restart_on(track_frame(frame(k, motion, |_| -1000.0)));
    }
    assert_eq!(live.start_on_latest(&queries).unwrap(), vec![0, 1]);
    for k in 3..10 {
        let a = ahead
            .step(track_frame(frame(k, motion, |_| -1000.0)))
            .unwrap();
        let b = live
            .step(track_frame(frame(k, motion, |_| -1000.0)))
            .unwrap();
        assert_eq!(a, b, "frame {k}");
    }
    // more points later: indices go on; clear forgets them all
    assert_eq!(live.start_on_latest(&[[100.0, 100.0]]).unwrap(), vec![2]);
    live.clear();
    assert!(live.is_empty());
}

#[test]
fn live_requests_are_all_or_none() {
    let mut t = Tracker::new(TrackOptions::default()).unwrap();
    // no frame yet
    assert!(t.start_on_latest(&[[10.0, 10.0]]).is_err());
    t.restart_on(track_frame(frame(0, [0.0, 0.0], |_| -1000.0)));
    for bad in [[f32::NAN, 10.0], [W as f32, 10.0], [10.0, -1.0]] {
        let err = t.start_on_latest(&[[10.0, 10.0], bad]).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(t.is_empty(), "nothing started for {bad:?}");
    }
    assert_eq!(
        t.start_on_latest(&[[W as f32 - 1.0, 0.0]]).unwrap(),
        vec![0]
    );
}
