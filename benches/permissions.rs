//! Entitlement checks (issue #13): a publish or subscribe against a token
//! with 100 patterns, allowed and refused.
//! `cargo bench --bench permissions -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringfan::broker::Permissions;

/// 100 patterns shaped like a market-data token: 90 exact symbols on one
/// venue, whole venues, one symbol everywhere, and a few `>` feeds.
fn token() -> Vec<String> {
    let mut out: Vec<String> = (0..90).map(|i| format!("md.NASDAQ.SYM{i}")).collect();
    for v in ["NYSE", "ARCA", "BATS", "IEX", "EDGX"] {
        out.push(format!("md.{v}.*"));
    }
    out.extend(
        [
            "md.*.QQQ",
            "news.>",
            "ref.*.daily",
            "alerts.*.>",
            "md.OPRA.>",
        ]
        .map(String::from),
    );
    out
}

fn checks(c: &mut Criterion) {
    let pats = token();
    assert_eq!(pats.len(), 100);
    let p = match Permissions::new(&pats, &pats) {
        Ok(p) => p,
        Err((p, e)) => panic!("{p}: {e}"),
    };
    let mut g = c.benchmark_group("permissions");
    let publish = [
        ("allowed_exact", "md.NASDAQ.SYM42", true),
        ("allowed_wildcard", "md.OPRA.AAPL.C150", true),
        ("refused", "md.NASDAQ.OTHER", false),
    ];
    for (name, topic, want) in publish {
        assert_eq!(p.may_publish(topic), want, "{topic}");
        g.bench_function(format!("may_publish/{name}"), |b| {
            b.iter(|| p.may_publish(black_box(topic)))
        });
    }
    let subscribe = [
        ("allowed_exact", "md.NASDAQ.SYM42", true),
        ("allowed_wildcard", "alerts.x.>", true),
        ("refused_wildcard", "md.NASDAQ.*", false),
        ("refused_gt", "md.>", false),
    ];
    for (name, pattern, want) in subscribe {
        assert_eq!(p.may_subscribe(pattern), want, "{pattern}");
        g.bench_function(format!("may_subscribe/{name}"), |b| {
            b.iter(|| p.may_subscribe(black_box(pattern)))
        });
    }
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
