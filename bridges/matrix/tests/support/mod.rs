//! Test support: a real Synapse, a second Matrix client, captured logs.
#![allow(dead_code)]

pub mod client;
pub mod logs;
pub mod synapse;
