//! Small helpers shared by every layer: the seeded random generator, order statistics and even
//! subsampling, and where files are (`paths`). One home for each, so no module writes its own.

pub mod paths;
pub mod rng;
pub mod stats;
