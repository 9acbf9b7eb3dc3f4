//! Small helpers shared by every layer: the seeded random generator, order statistics and even
//! subsampling. One home for each, so no module writes its own.

pub mod rng;
pub mod stats;
