//! Engine sessions (being written).

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Placeholder until the runtime layer lands.
    #[error("{0}")]
    Other(String),
}
