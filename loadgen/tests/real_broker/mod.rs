//! The real broker, in process on real sockets, for the load generator's
//! tests: the same setup the binary makes, with `/echo` on (the echo
//! scenario needs it) and room enough that no test meets a limit by
//! accident.

use ringfan::broker::{Broker, BrokerConfig, BrokerStats, SlowPolicy};
use ringfan::runtime::{Config, Server};
use ringfan::server::{Node, Routes};
use std::sync::Arc;

pub fn ringfan(shards: usize) -> Server {
    let config = Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards,
        pin: false,
        ..Config::default()
    };
    let broker = BrokerConfig {
        policy: SlowPolicy::Disconnect,
        max_queued: 8 << 20,
        max_message: 1 << 20,
        max_subscriptions: 1024,
        max_lvc_bytes: 64 << 20,
        ..BrokerConfig::default()
    };
    let stats: Arc<[BrokerStats]> = (0..shards).map(|_| BrokerStats::default()).collect();
    Server::start(config, move |_| {
        Node::new(
            Broker::new(broker.clone(), stats.clone()),
            Routes {
                echo: true,
                ..Routes::default()
            },
        )
    })
    .expect("broker starts")
}
