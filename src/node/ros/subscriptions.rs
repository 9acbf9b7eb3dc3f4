//! The node's inputs: image and CameraInfo subscriptions, `/tf_static` (the odometry modes), and the service
//! servers, each drained by a small tokio task into [`Shared`] (images through the admission policy,
//! service calls into the inbox's queues, answered "busy" when full).

use std::sync::Arc;

use futures::StreamExt;
use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion};
use r2r::matcha_msgs::msg::Correspondences;
use r2r::matcha_msgs::srv::{Match, SetPose, Track};
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image};
use r2r::std_srvs::srv::Trigger;
use r2r::tf2_msgs::msg::TFMessage;
use r2r::QosProfile;

use super::inbox::{Control, Shared, SERVICE_QUEUE};
use super::NodeError;
use crate::node::config::{NodeConfig, Reliability, Transport};
use crate::node::convert::{BadInput, ImageMsg};
use crate::node::sync::Side;

type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// QoS of the image and CameraInfo subscriptions.
pub(super) fn input_qos(node: &NodeConfig) -> QosProfile {
    let base = match node.qos.reliability {
        Reliability::BestEffort => QosProfile::sensor_data(),
        Reliability::Reliable => QosProfile::default(),
    };
    base.keep_last(node.qos.depth as usize)
}

/// `/tf_static`'s QoS as tf2 uses it: reliable, transient local (late joiners get the latched transforms).
pub(super) fn tf_static_qos() -> QosProfile {
    QosProfile::default()
        .keep_last(100)
        .durability(r2r::qos::DurabilityPolicy::TransientLocal)
}

/// Images of one side (raw or compressed, by `transport`).
pub(super) fn images(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    cfg: &NodeConfig,
    topic: &str,
    side: Side,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let mode = cfg.mode;
    match cfg.transport {
        Transport::Raw => {
            let mut s = node.subscribe::<Image>(topic, input_qos(cfg))?;
            let sh = shared.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(m) = s.next().await {
                    sh.on_image(side, mode, ImageMsg::Raw(m));
                }
            }));
        }
        Transport::Compressed => {
            let topic = format!("{topic}/compressed");
            let mut s = node.subscribe::<CompressedImage>(&topic, input_qos(cfg))?;
            let sh = shared.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(m) = s.next().await {
                    sh.on_image(side, mode, ImageMsg::Compressed(m));
                }
            }));
        }
    }
    Ok(())
}

/// CameraInfo of camera `idx` (0 left, 1 right): the latest one is kept.
pub(super) fn camera_info(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    cfg: &NodeConfig,
    topic: &str,
    idx: usize,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let mut s = node.subscribe::<CameraInfo>(topic, input_qos(cfg))?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(m) = s.next().await {
            if let Ok(mut c) = sh.camera_info.lock() {
                c[idx] = Some(m);
            }
            sh.camera_info_arrived.notify_all();
        }
    }));
    Ok(())
}

/// `/tf_static` into the static transform buffer (a malformed transform is counted as `bad_tf`).
pub(super) fn tf_static(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    topic: &str,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let mut s = node.subscribe::<TFMessage>(topic, tf_static_qos())?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(m) = s.next().await {
            for t in &m.transforms {
                let (p, q) = (&t.transform.translation, &t.transform.rotation);
                let q = Quaternion::new(q.w, q.x, q.y, q.z);
                let r = if q.norm() > 1e-6 && q.coords.iter().all(|v| v.is_finite()) {
                    let iso = Isometry3::from_parts(
                        Translation3::new(p.x, p.y, p.z),
                        UnitQuaternion::from_quaternion(q),
                    );
                    sh.tf_static
                        .lock()
                        .map_err(|_| "buffer poisoned".to_string())
                        .and_then(|mut b| {
                            b.set(&t.header.frame_id, &t.child_frame_id, iso)
                                .map_err(|e| e.to_string())
                        })
                } else {
                    Err(format!(
                        "transform {:?} → {:?}: the rotation is not a quaternion",
                        t.header.frame_id, t.child_frame_id
                    ))
                };
                if let Err(e) = r {
                    sh.problem(&BadInput::new("bad_tf", e));
                }
            }
        }
    }));
    Ok(())
}

/// The `match` service: requests queue in the inbox (at most [`SERVICE_QUEUE`]).
pub(super) fn match_service(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    name: &str,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let mut service =
        node.create_service::<Match::Service>(name, QosProfile::services_default())?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(req) = service.next().await {
            let rejected = match sh.inbox.lock() {
                Ok(mut inbox) if inbox.service.len() < SERVICE_QUEUE => {
                    inbox.service.push_back(req);
                    None
                }
                _ => Some(req),
            };
            if let Some(req) = rejected {
                let resp = Match::Response {
                    success: false,
                    message: format!("busy: {SERVICE_QUEUE} requests already queued"),
                    correspondences: Correspondences::default(),
                };
                if let Err(e) = req.respond(resp) {
                    log::error!("match service: cannot respond: {e}");
                }
            } else {
                sh.wake.notify_one();
            }
        }
    }));
    Ok(())
}

/// Queues an odometry service call; `false` when the queue is full.
fn queue_control(sh: &Shared, c: Control) -> Result<(), Control> {
    match sh.inbox.lock() {
        Ok(mut inbox) if inbox.control.len() < SERVICE_QUEUE => {
            inbox.control.push_back(c);
            drop(inbox);
            sh.wake.notify_one();
            Ok(())
        }
        _ => Err(c),
    }
}

/// `/initialpose` (`geometry_msgs/PoseWithCovarianceStamped`, e.g. RViz's "2D Pose Estimate"): a hint for the
/// map localization, handled between frames (a hint beyond the control queue is dropped and counted).
pub(super) fn initial_pose(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    cfg: &NodeConfig,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let mut s = node.subscribe::<r2r::geometry_msgs::msg::PoseWithCovarianceStamped>(
        &cfg.topics.initial_pose,
        QosProfile::default().keep_last(5),
    )?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(m) = s.next().await {
            if queue_control(&sh, Control::InitialPose(Box::new(m))).is_err() {
                sh.problem(&BadInput::new(
                    "initial_pose_dropped",
                    "the control queue is full: /initialpose dropped",
                ));
            }
        }
    }));
    Ok(())
}

/// The `track` service (`matcha_msgs/Track`) of the point tracking: calls wait in the control queue.
pub(super) fn track_service(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    cfg: &NodeConfig,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let mut track = node.create_service::<Track::Service>(
        &cfg.topics.track_service,
        QosProfile::services_default(),
    )?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(req) = track.next().await {
            if let Err(Control::Track(req)) = queue_control(&sh, Control::Track(req)) {
                let resp = Track::Response {
                    success: false,
                    message: format!("busy: {SERVICE_QUEUE} calls already queued"),
                    ids: Vec::new(),
                };
                if let Err(e) = req.respond(resp) {
                    log::error!("track service: cannot respond: {e}");
                }
            }
        }
    }));
    Ok(())
}

/// The `reset` (`std_srvs/Trigger`) and `set_pose` services of the odometry modes.
pub(super) fn odometry_services(
    node: &mut r2r::Node,
    shared: &Arc<Shared>,
    cfg: &NodeConfig,
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let busy = || format!("busy: {SERVICE_QUEUE} odometry calls already queued");
    let mut reset = node.create_service::<Trigger::Service>(
        &cfg.topics.reset_service,
        QosProfile::services_default(),
    )?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(req) = reset.next().await {
            if let Err(Control::Reset(req)) = queue_control(&sh, Control::Reset(req)) {
                let resp = Trigger::Response {
                    success: false,
                    message: busy(),
                };
                if let Err(e) = req.respond(resp) {
                    log::error!("reset service: cannot respond: {e}");
                }
            }
        }
    }));
    let mut set_pose = node.create_service::<SetPose::Service>(
        &cfg.topics.set_pose_service,
        QosProfile::services_default(),
    )?;
    let sh = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(req) = set_pose.next().await {
            if let Err(Control::SetPose(req)) = queue_control(&sh, Control::SetPose(req)) {
                let resp = SetPose::Response {
                    success: false,
                    message: busy(),
                };
                if let Err(e) = req.respond(resp) {
                    log::error!("set_pose service: cannot respond: {e}");
                }
            }
        }
    }));
    Ok(())
}
