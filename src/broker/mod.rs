//! The pub/sub broker: plain data structures behind one narrow seam
//! ([`Host`]), testable without sockets. It knows topics, JSON and
//! WebSocket close codes; it knows nothing of io_uring.

pub mod engine;
pub mod host;
pub mod mail;
pub mod owner;
pub mod stats;
mod subscriber;
pub mod topic;
pub mod topic_index;
pub mod trie;
pub mod wire;

#[cfg(test)]
mod engine_tests;

pub use engine::{Broker, BrokerConfig, SlowPolicy};
pub use host::{Client, Host, MAX_SHARDS};
pub use mail::Mail;
pub use stats::BrokerStats;
