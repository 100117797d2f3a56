//! The load generator as a library (the binary is a thin CLI over it), so
//! that its accounting can be tested against brokers whose output is known.

pub mod auth;
pub mod cli;
pub mod control;
pub mod driver;
pub mod feed;
pub mod http_pub;
pub mod limits;
pub mod msg;
pub mod plan;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod zipf;
