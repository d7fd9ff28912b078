//! placeholder
pub mod metrics;
