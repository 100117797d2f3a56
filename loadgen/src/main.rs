//! `ringfan-loadgen`: the bundled load generator. Its scenarios (fanout,
//! feed, echo, conns) arrive with the load generator issue; until then the
//! binary says so instead of pretending to measure anything.

fn main() {
    eprintln!(
        "ringfan-loadgen: no scenarios yet; the load generator is being built (see README.md)"
    );
    std::process::exit(2);
}
