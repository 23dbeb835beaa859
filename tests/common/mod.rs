//! Helpers shared by the integration tests.

pub mod fdcount;
pub mod wire;
