//! The pub/sub broker: plain data structures behind one narrow seam
//! ([`Host`]), testable without sockets. It knows topics, JSON and
//! WebSocket close codes; it knows nothing of io_uring.

pub mod auth;
pub mod batch;
pub mod cluster;
mod cluster_answer;
mod cluster_fill;
mod cluster_mail;
mod cluster_snapshot;
pub mod config;
pub mod engine;
mod fanout;
pub mod host;
mod limits;
mod log_events;
pub mod mail;
pub mod owner;
mod patterns;
pub mod permissions;
pub mod sim;
mod snapshots;
pub mod stats;
mod stream_message;
mod subscriber;
pub mod topic;
pub mod topic_index;
pub mod trie;
pub mod view;
pub mod wire;
pub mod within;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod cluster_fill_tests;
#[cfg(test)]
mod cluster_snapshot_tests;
#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod permissions_tests;
#[cfg(test)]
mod remote_pace_tests;
#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod within_tests;

pub use crate::rate::Rate;
pub use config::{BrokerConfig, SlowPolicy};
pub use engine::Broker;
pub use host::{Client, Host, MAX_SHARDS};
pub use mail::Mail;
pub use permissions::Permissions;
pub use stats::BrokerStats;
