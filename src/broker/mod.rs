//! The pub/sub broker's data structures: plain data, testable without
//! sockets, and the broker app that runs them over the runtime.

pub mod app;
pub mod owner;
pub mod topic;
pub mod trie;
pub mod wire;

pub use app::{Broker, BrokerConfig, BrokerStats, Mail, SlowPolicy};
