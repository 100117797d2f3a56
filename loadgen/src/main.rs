//! `ringfan-loadgen`: drive a ringfan (or any broker speaking its
//! protocol) with many connections, and report what arrived and how fast,
//! honestly. See `ringfan-loadgen <scenario> --help`.

use clap::{Args, Parser, Subcommand};
use loadgen::cli::{self, Load};
use loadgen::plan::{self, Data, Plan, Publishing, Scenario};
use loadgen::report::{self, RunReport};
use loadgen::{feed, limits, run};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "ringfan-loadgen",
    version,
    about = "Load generator for ringfan: an io_uring WebSocket client on ringfan's own runtime",
    long_about = "Load generator for ringfan: an io_uring WebSocket client built on ringfan's own \
runtime. Latency is measured from each message's intended send time (an open-loop schedule, so a \
stalled broker cannot hide the messages it delayed) to its receipt; every delivery is checked \
against the topic's seq (lost, duplicated, out of order).",
    after_long_help = "Exit status: 0 when the run found no problems; 1 when it could not run \
(e.g. no connection could be established: it stops at once and says why) or could not write its \
reports; 2 for bad arguments; \
3 when it found problems (loss, duplicates, reordering, failed connections, `err` replies), \
unless --report-only."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// S subscribers over T topics, P publishers at a combined rate R.
    Fanout(Fanout),
    /// A market-data feed: symbols as md.<venue>.<symbol>, Zipf update rates, a burst.
    Feed(Feed),
    /// C connections to /echo; round-trip latency.
    Echo(Echo),
    /// Open N connections (handshake + one subscription each), hold them, broadcast once.
    Conns(Conns),
    /// Hold N subscribers under a feed, drop M of them at once, reconnect them with snapshots.
    ///
    /// With --shards 2 or more, the held subscribers and the publishers run on
    /// shard 0 and the dropped ones on the others, at a lower priority (nice
    /// 10), so the held latency is the broker's, not the generator's own storm
    /// work (the report's storm_held_apart).
    Storm(Storm),
}

#[derive(Args, Debug, serde::Serialize)]
struct Fanout {
    /// Subscriber connections (each subscribes to one topic).
    #[arg(long, default_value_t = 1000)]
    subscribers: u64,
    /// Topics, named <prefix>.0 … <prefix>.T-1.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Popularity of topics among subscribers: Zipf exponent (0 = uniform).
    #[arg(long, default_value_t = 0.0)]
    zipf: f64,
    /// Publisher connections; publishes pick topics uniformly.
    #[arg(long, default_value_t = 1)]
    publishers: u64,
    /// Publishes per second, all publishers together. 0 = as fast as the
    /// broker acknowledges, with --window publishes in flight per publisher.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Unacknowledged publishes per publisher when --rate is 0 (with
    /// --publish-via http: unanswered requests, each of --batch messages).
    #[arg(long, default_value_t = 64)]
    window: u32,
    /// Bytes of `data` per message (a JSON object carrying the send time);
    /// ignored with --data quote.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// What `data` is: `pad`, the send time padded with letters to
    /// --payload bytes; or `quote`, the feed scenario's quotes and trades
    /// (about 100 bytes, a symbol and price walk per topic), realistic to
    /// compress (--deflate).
    #[arg(long, value_enum, default_value_t = Data::Pad)]
    data: Data,
    /// Topic name prefix.
    #[arg(long, default_value = "lg")]
    prefix: String,
    /// Subscribe with `snapshot: true`.
    #[arg(long)]
    snapshot: bool,
    #[command(flatten)]
    publish: cli::Publish,
    #[command(flatten)]
    timing: cli::Timing,
    #[command(flatten)]
    common: cli::Common,
}

#[derive(Args, Debug, serde::Serialize)]
struct Feed {
    /// Symbols (topics md.<venue>.<symbol>).
    #[arg(long, default_value_t = 1000)]
    symbols: usize,
    /// Venues each symbol is quoted on (NASDAQ, NYSE, ARCA, BATS, IEX), so
    /// there are symbols × venues topics.
    #[arg(long, default_value_t = 1)]
    venues: usize,
    /// Updates per second over all symbols, before the burst.
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Zipf exponent of update rates over symbol rank (AAPL trades more than ZZZZ).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Feed handler connections; each owns a share of the symbols.
    #[arg(long, default_value_t = 4)]
    publishers: u64,
    /// Subscriber connections, each on one symbol, chosen by the same popularity.
    #[arg(long, default_value_t = 1000)]
    subscribers: u64,
    /// Rate multiplier during the burst ("market open"); 1 = no burst.
    #[arg(long, default_value_t = 5.0)]
    burst: f64,
    /// When the burst starts, seconds after publishing starts.
    #[arg(long, default_value = "3s", value_parser = cli::duration)]
    #[serde(serialize_with = "cli::ser_duration")]
    burst_at: Duration,
    /// How long the burst lasts.
    #[arg(long, default_value = "2s", value_parser = cli::duration)]
    #[serde(serialize_with = "cli::ser_duration")]
    burst_len: Duration,
    /// Subscribe with `snapshot: true`.
    #[arg(long)]
    snapshot: bool,
    #[command(flatten)]
    publish: cli::Publish,
    #[command(flatten)]
    timing: cli::Timing,
    #[command(flatten)]
    common: cli::Common,
}

#[derive(Args, Debug, serde::Serialize)]
struct Echo {
    /// Connections to /echo (the URL's path is replaced).
    #[arg(long, default_value_t = 100)]
    connections: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Messages per second over all connections; 0 = closed loop with
    /// --window messages in flight per connection.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Messages in flight per connection when --rate is 0.
    #[arg(long, default_value_t = 1)]
    window: u32,
    #[command(flatten)]
    timing: cli::Timing,
    #[command(flatten)]
    common: cli::Common,
}

#[derive(Args, Debug, serde::Serialize)]
struct Conns {
    /// Connections to open, each subscribed to the broadcast topic.
    #[arg(long, default_value_t = 10_000)]
    connections: u64,
    /// How long to hold them all open before the broadcast.
    #[arg(long, default_value = "5s", value_parser = cli::duration)]
    #[serde(serialize_with = "cli::ser_duration")]
    hold: Duration,
    /// The topic every connection subscribes to.
    #[arg(long, default_value = "lg.broadcast")]
    topic: String,
    /// Bytes of the broadcast's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Subscribe with `snapshot: true`.
    #[arg(long)]
    snapshot: bool,
    #[command(flatten)]
    common: cli::Common,
}

#[derive(Args, Debug, serde::Serialize)]
struct Storm {
    /// Subscriber connections, each on one topic of the feed.
    #[arg(long, default_value_t = 10_000)]
    connections: u64,
    /// How many of them the storm closes at once and reconnects (each
    /// resubscribing with `snapshot: true`); the rest are held throughout.
    #[arg(long, default_value_t = 5_000)]
    drop: u64,
    /// When the storm drops them, after measuring starts.
    #[arg(long, default_value = "3s", value_parser = cli::duration)]
    #[serde(serialize_with = "cli::ser_duration")]
    drop_at: Duration,
    /// Topics (symbols md.<venue>.<symbol>); subscribers spread evenly.
    #[arg(long, default_value_t = 100)]
    topics: usize,
    /// Feed updates per second over all topics (uniformly).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Feed handler connections; each owns a share of the topics.
    #[arg(long, default_value_t = 1)]
    publishers: u64,
    /// Subscribe with `snapshot: true` at the start too (reconnections
    /// always do).
    #[arg(long)]
    snapshot: bool,
    #[command(flatten)]
    publish: cli::Publish,
    #[command(flatten)]
    timing: cli::Timing,
    #[command(flatten)]
    common: cli::Common,
}

fn main() {
    let cli = Cli::parse();
    let params = match &cli.scenario {
        Cmd::Fanout(a) => serde_json::to_value(a),
        Cmd::Feed(a) => serde_json::to_value(a),
        Cmd::Echo(a) => serde_json::to_value(a),
        Cmd::Conns(a) => serde_json::to_value(a),
        Cmd::Storm(a) => serde_json::to_value(a),
    }
    .unwrap_or_default();
    let (plan, common) = match build(cli.scenario) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ringfan-loadgen: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = cli::pin(&common.cpus) {
        eprintln!("ringfan-loadgen: {e}");
        std::process::exit(2);
    }
    let opts = run::Options {
        progress: !common.quiet,
        server_pid: common.server_pid,
        params,
        target: common.target(),
    };
    let report = match run::run(plan, opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringfan-loadgen: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(emit(&report, &common));
}

/// Shows and writes the report as asked; the exit status (see --help).
fn emit(report: &RunReport, common: &cli::Common) -> i32 {
    if let Some(why) = &report.aborted {
        eprintln!("ringfan-loadgen: {why}");
    } else {
        print!("{}", report::human_table(report));
    }
    if let Some(path) = &common.json {
        if let Err(e) = report::write_json(report, path) {
            eprintln!("ringfan-loadgen: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    if report.aborted.is_some() {
        return 1;
    }
    if let Some(path) = &common.plot {
        if let Err(e) = report::write_svg(report, path) {
            eprintln!("ringfan-loadgen: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    if !report.problems.is_empty() && !common.report_only {
        eprintln!(
            "ringfan-loadgen: the run found {} problem(s), listed above; exit status 3 (--report-only to exit 0)",
            report.problems.len()
        );
        return 3;
    }
    0
}

fn build(cmd: Cmd) -> Result<(Plan, cli::Common), String> {
    Ok(match cmd {
        Cmd::Fanout(a) => {
            let topics: Vec<String> = (0..a.topics.max(1))
                .map(|i| format!("{}.{i}", a.prefix))
                .collect();
            let spread = plan::spread(a.subscribers, topics.len(), a.zipf)?;
            let load = Load {
                snapshot: a.snapshot,
                topics,
                subs_per_topic: spread,
                publishers: a.publishers,
                rate: a.rate,
                window: a.window,
                payload: a.payload,
                data: a.data,
                via: a.publish.via()?,
                ..Load::of(Scenario::Fanout, a.timing)
            };
            (cli::plan(&a.common, load)?, a.common)
        }
        Cmd::Feed(a) => {
            let topics = feed::topics(a.symbols.max(1), a.venues.max(1));
            let z = loadgen::zipf::Zipf::new(topics.len(), a.zipf)?;
            let weights: Vec<f64> = (0..topics.len()).map(|i| z.weight(i)).collect();
            let spread = plan::spread(a.subscribers, topics.len(), a.zipf)?;
            let load = Load {
                snapshot: a.snapshot,
                topics,
                subs_per_topic: spread,
                publishers: a.publishers.max(1),
                rate: a.rate,
                publishing: Publishing::Owned(weights),
                via: a.publish.via()?,
                ..Load::of(Scenario::Feed, a.timing)
            };
            let mut p = cli::plan(&a.common, load)?;
            if a.rate <= 0.0 {
                return Err("feed needs --rate > 0 (updates per second)".into());
            }
            if a.burst > 1.0 {
                p.burst = Some((a.burst, a.burst_at.as_secs_f64(), a.burst_len.as_secs_f64()));
            }
            (p, a.common)
        }
        Cmd::Echo(a) => {
            let load = Load {
                echoers: a.connections,
                rate: a.rate,
                window: a.window,
                payload: a.payload,
                ..Load::of(Scenario::Echo, a.timing)
            };
            (cli::plan(&a.common, load)?, a.common)
        }
        Cmd::Conns(a) => {
            let load = Load {
                hold: a.hold,
                snapshot: a.snapshot,
                topics: vec![a.topic.clone()],
                subs_per_topic: vec![a.connections],
                publishers: 1,
                payload: a.payload,
                publishing: Publishing::Once,
                ..Load::of(Scenario::Conns, cli::Timing::NONE)
            };
            (cli::plan(&a.common, load)?, a.common)
        }
        Cmd::Storm(a) => {
            if a.rate <= 0.0 {
                return Err("storm needs --rate > 0 (feed updates per second)".into());
            }
            if a.drop > a.connections {
                return Err(format!(
                    "--drop {} is more than --connections {}",
                    a.drop, a.connections
                ));
            }
            if a.drop_at >= a.timing.duration {
                return Err(format!(
                    "--drop-at {:?} must fall inside --duration {:?}, leaving time after the storm",
                    a.drop_at, a.timing.duration
                ));
            }
            let topics = feed::topics(a.topics.max(1), 1);
            let load = Load {
                snapshot: a.snapshot,
                subs_per_topic: plan::spread(a.connections, topics.len(), 0.0)?,
                // Weights are shares of --rate (they sum to 1).
                publishing: Publishing::Owned(vec![1.0 / topics.len() as f64; topics.len()]),
                topics,
                publishers: a.publishers.max(1),
                rate: a.rate,
                via: a.publish.via()?,
                ..Load::of(Scenario::Storm, a.timing)
            };
            let mut p = cli::plan(&a.common, load)?;
            p.storm = Some(plan::Storm {
                drop: a.drop,
                at: a.drop_at,
            });
            // Two or more shards: the held subscribers and the publishers
            // on shard 0, the dropped ones on the others (`held_apart`),
            // when the held fit one ring; the dropped get the rings they
            // need.
            let per_ring = cli::per_ring();
            let held = p.connections() - p.subscribers.min(a.drop);
            if p.shards >= 2 && a.drop > 0 && held <= per_ring {
                p.held_apart = true;
                let needed = 1 + a.drop.div_ceil(per_ring) as usize;
                if needed > p.shards {
                    eprintln!(
                        "ringfan-loadgen: {} dropped connections need {} shards besides the held ones' at RLIMIT_NOFILE {}; using {needed}",
                        a.drop,
                        needed - 1,
                        per_ring + 256
                    );
                    p.shards = needed;
                    // The limits check ran with fewer shards: the connect
                    // window is per shard, so more are in flight now.
                    let in_flight = (p.shards * p.connect_window) as u64;
                    let loopback =
                        plan::all_loopback(p.endpoints.iter().chain(&p.publish_endpoints));
                    if let Some(note) = limits::backlog_note(in_flight, loopback) {
                        eprintln!("ringfan-loadgen: {note}");
                    }
                }
            }
            (p, a.common)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringfan-loadgen").chain(args.iter().copied()))
    }

    fn plan_of(args: &[&str]) -> Plan {
        build(parse(args).expect("parses").scenario)
            .expect("builds")
            .0
    }

    #[test]
    fn each_scenario_takes_only_its_flags() {
        // conns has no measured window; echo subscribes to nothing.
        for bad in [
            &["conns", "--duration", "5s"][..],
            &["conns", "--warmup", "1s"],
            &["echo", "--snapshot"],
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{bad:?}");
        }
        for good in [
            &["fanout", "--duration", "1s", "--warmup", "0s", "--snapshot"][..],
            &["feed", "--duration", "1s", "--snapshot"],
            &["echo", "--duration", "1s", "--warmup", "0s"],
            &[
                "conns",
                "--hold",
                "1s",
                "--snapshot",
                "--grace",
                "1s",
                "--tick",
                "1ms",
            ],
        ] {
            assert!(parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn several_urls_comma_separated_or_repeated_spread_the_connections() {
        let (a, b, c) = (
            "ws://127.0.0.1:7001/ws",
            "ws://127.0.0.1:7002/x",
            "ws://127.0.0.1:7003/ws",
        );
        let ab = format!("{a},{b}");
        let args = [
            "fanout",
            "--subscribers",
            "6",
            "--publishers",
            "2",
            "--url",
            &ab,
            "--url",
            c,
        ];
        let p = plan_of(&args);
        let port = |i| p.endpoint_of(i).addr.port();
        assert_eq!(
            (0..6).map(port).collect::<Vec<_>>(),
            [7001, 7002, 7003, 7001, 7002, 7003]
        );
        assert_eq!(
            (port(6), port(7)),
            (7001, 7002),
            "publishers round-robin too"
        );
        assert_eq!(p.endpoint_of(1).path, "/x");
        let Cmd::Fanout(f) = parse(&args).unwrap().scenario else {
            unreachable!()
        };
        let params = serde_json::to_value(&f).unwrap();
        assert_eq!(params["common"]["url"], format!("{ab},{c}"));
        assert!(params["common"].get("publish_url").is_none());
        assert_eq!(f.common.target(), format!("{ab},{c}"));

        // Publishers on A (by index, or by a URL not among --url).
        let bc = format!("{b},{c}");
        for (urls, publish) in [(ab.as_str(), "0"), (bc.as_str(), a)] {
            let args = [
                "fanout",
                "--subscribers",
                "4",
                "--publishers",
                "3",
                "--url",
                urls,
                "--publish-url",
                publish,
            ];
            let p = plan_of(&args);
            assert!(
                (4..7).all(|i| p.endpoint_of(i).addr.port() == 7001),
                "{publish}"
            );
            let Cmd::Fanout(f) = parse(&args).unwrap().scenario else {
                unreachable!()
            };
            assert_eq!(f.common.target(), format!("{urls} (publishing to {a})"));
        }
        let p = plan_of(&[
            "fanout",
            "--subscribers",
            "4",
            "--url",
            &bc,
            "--publish-url",
            a,
        ]);
        let subs: Vec<u16> = (0..4).map(|i| p.endpoint_of(i).addr.port()).collect();
        assert_eq!(subs, [7002, 7003, 7002, 7003], "subscribers only on --url");

        // One URL: as it always was.
        let p = plan_of(&["fanout", "--subscribers", "3", "--url", a]);
        assert!((0..4).all(|i| p.endpoint_of(i).addr.port() == 7001));
        assert_eq!(p.endpoints.len(), 1);
        let p = plan_of(&["feed", "--url", &ab]);
        assert_eq!(p.endpoints.len(), 2);

        for (bad, why) in [
            (
                &["fanout", "--url", a, "--publish-url", "1"][..],
                "indexed from 0",
            ),
            (&["fanout", "--url", "ws://127.0.0.1:1,http://y"], "ws://"),
            (&["echo", "--url", a, "--publish-url", "0"], "no publishers"),
        ] {
            let e = build(parse(bad).unwrap().scenario).expect_err("an error");
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn every_scenario_takes_a_token() {
        for scenario in ["fanout", "feed", "echo", "conns", "storm"] {
            let p = plan_of(&[scenario, "--token", "h.p.s", "--token-via", "header"]);
            assert_eq!(
                p.auth.request(0, "/ws").1,
                vec![("Authorization".to_string(), "Bearer h.p.s".to_string())],
                "{scenario}"
            );
            assert!(p.auth.request(0, "/ws").0 == "/ws", "{scenario}");
            let cli = parse(&[scenario, "--token", "h.p.s"]).expect("parses");
            let params = match &cli.scenario {
                Cmd::Fanout(a) => serde_json::to_value(a),
                Cmd::Feed(a) => serde_json::to_value(a),
                Cmd::Echo(a) => serde_json::to_value(a),
                Cmd::Conns(a) => serde_json::to_value(a),
                Cmd::Storm(a) => serde_json::to_value(a),
            }
            .unwrap();
            assert_eq!(
                params["common"]["auth"],
                serde_json::json!({"source": "token", "via": "query"}),
                "{scenario}"
            );
            assert!(!params.to_string().contains("h.p.s"), "{scenario}");
        }
    }

    #[test]
    fn strict_is_a_no_op_and_report_only_is_not() {
        assert!(parse(&["fanout", "--strict"]).is_ok());
        assert!(parse(&["fanout", "--report-only"]).is_ok());
        assert!(parse(&["fanout", "--strict", "--report-only"]).is_err());
    }

    #[test]
    fn conns_defaults_and_overrides() {
        let p = plan_of(&["conns", "--hold", "2s"]);
        assert_eq!((p.duration, p.warmup), (Duration::ZERO, Duration::ZERO));
        assert_eq!(p.hold, Duration::from_secs(2));
        assert_eq!(p.grace, Duration::from_secs(60));
        assert_eq!(p.tick, Duration::from_millis(5));
        let p = plan_of(&["conns", "--grace", "3s", "--tick", "1ms", "--snapshot"]);
        assert_eq!(
            (p.grace, p.tick, p.snapshot),
            (Duration::from_secs(3), Duration::from_millis(1), true)
        );
        let p = plan_of(&["fanout", "--duration", "3s", "--warmup", "1s"]);
        assert_eq!(
            (p.duration, p.warmup),
            (Duration::from_secs(3), Duration::from_secs(1))
        );
        assert_eq!(
            (p.grace, p.tick, p.snapshot),
            (Duration::from_secs(5), Duration::from_micros(100), false)
        );
        assert!(!plan_of(&["echo"]).snapshot);
    }

    #[test]
    fn fanout_quote_data_round_trips_through_the_receive_side() {
        use loadgen::{msg, schedule};
        let p = plan_of(&["fanout", "--topics", "3"]);
        assert_eq!(p.data, Data::Pad, "padding unless asked");
        let cli = parse(&["fanout", "--topics", "3", "--data", "quote"]).expect("parses");
        let Cmd::Fanout(a) = &cli.scenario else {
            panic!("fanout");
        };
        assert_eq!(serde_json::to_value(a).unwrap()["data"], "quote");
        let p = build(cli.scenario).expect("builds").0;
        assert_eq!(p.data, Data::Quote);
        // Each topic has its own symbol, and every publisher starts it alike.
        let mut books = schedule::books(&p);
        let syms: Vec<String> = books.iter().flatten().map(|b| b.sym().into()).collect();
        assert_eq!(syms, feed::symbols(3));
        let again = schedule::books(&p);
        assert!(books.iter().zip(&again).all(|(a, b)| {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            a.bid_cents() == b.bid_cents()
        }));
        let mut rng = fastrand::Rng::with_seed(1);
        for (i, t) in (0..300u64).map(|i| (i, 1_700_000_000_000_000_000 + i * 977)) {
            let topic = (i % 3) as u32;
            let mut data = Vec::new();
            schedule::write_data(&p, &mut books, &mut rng, topic, t, &mut data);
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(v["sym"], syms[topic as usize].as_str());
            assert!(v["type"] == "quote" || v["type"] == "trade", "{v}");
            assert!((60..200).contains(&data.len()), "{}", data.len());
            // Framed as the broker delivers it, read as a subscriber does.
            let name = &p.topics[topic as usize];
            let frame = format!(
                r#"{{"op":"msg","topic":"{name}","seq":{},"data":{}}}"#,
                i + 1,
                std::str::from_utf8(&data).unwrap()
            );
            let d = msg::delivery(frame.as_bytes()).expect("the fast path");
            assert_eq!((d.seq, d.stamp, d.data_len), (i + 1, Some(t), data.len()));
            match msg::parse(frame.as_bytes()) {
                Ok(msg::Server::Msg { seq, data: got, .. }) => {
                    assert_eq!((seq, msg::stamp(got)), (i + 1, Some(t)));
                }
                other => panic!("{other:?}"),
            }
        }
        // Padding is written as before, --payload bytes.
        let p = plan_of(&["fanout", "--payload", "120"]);
        let mut data = Vec::new();
        schedule::write_data(&p, &mut schedule::books(&p), &mut rng, 0, 5, &mut data);
        assert_eq!((data.len(), msg::stamp(&data)), (120, Some(5)));
    }

    #[test]
    fn storm_plans_its_drop_inside_the_measured_window() {
        let p = plan_of(&[
            "storm",
            "--connections",
            "300",
            "--drop",
            "100",
            "--topics",
            "10",
            "--duration",
            "4s",
            "--drop-at",
            "1s",
        ]);
        assert_eq!((p.subscribers, p.publishers, p.topics.len()), (300, 1, 10));
        assert_eq!(
            p.storm,
            Some(plan::Storm {
                drop: 100,
                at: Duration::from_secs(1)
            })
        );
        assert_eq!((0..300).filter(|&i| p.dropped(i)).count(), 100);
        // The feed's weights are shares of --rate.
        let Publishing::Owned(w) = &p.publishing else {
            panic!("a feed");
        };
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        for bad in [
            &["storm", "--connections", "10", "--drop", "11"][..],
            &["storm", "--duration", "2s", "--drop-at", "2s"],
            &["storm", "--rate", "0"],
        ] {
            assert!(
                build(parse(bad).expect("parses").scenario).is_err(),
                "{bad:?}"
            );
        }
    }
}
