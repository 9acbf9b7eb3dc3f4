//! Accuracy metrics (being written).
