//! `ringfan-baseline`: the benchmarks' reference point.
//!
//! A WebSocket pub/sub broker written the way a typical competent Rust team
//! would write one with `tokio` + `tokio-tungstenite`: a multi-thread runtime,
//! a reader and a writer task per connection joined by an unbounded channel,
//! and all topics behind one `Arc<Mutex<HashMap>>`. It speaks the exact-topic
//! subset of ringfan's wire protocol (`sub`, `unsub`, `pub`, no wildcards or
//! snapshots) on `/ws` and echoes on `/echo`, so the benchmarks can drive both
//! brokers with the same load and print ringfan's figures as ratios of these.
//! It is meant to be idiomatic: neither deliberately slow nor hand-tuned.

mod broker;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

use broker::State;

#[derive(Parser, Debug)]
#[command(
    name = "ringfan-baseline",
    about = "Baseline tokio + tokio-tungstenite pub/sub broker (benchmark reference)"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the line printed at
    /// start shows the real one).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,

    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        eprintln!("ringfan-baseline: --threads must be at least 1");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args.listen, threads))?;
    // Connections still open are simply dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(addr: SocketAddr, threads: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "ringfan-baseline: listening on {local} ({threads} threads)"
        )?;
        out.flush()?;
    }

    let state = State::default();
    let next_id = AtomicU64::new(1);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(broker::handle_connection(stream, state.clone(), id));
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    eprintln!("ringfan-baseline: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
