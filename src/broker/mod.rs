//! The pub/sub broker's data structures: plain data, testable without
//! sockets. (The broker app that uses them over the runtime is next.)

pub mod topic;
pub mod trie;
