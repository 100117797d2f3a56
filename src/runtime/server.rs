//! Starting and stopping a runtime: one thread per shard, each pinned to
//! its core with its own ring, listener and mailbox.

use super::accept::Listening;
use super::app::App;
use super::config::{Config, StartError};
use super::external::ExternalInbox;
use super::peer::PeerLimits;
use super::shard::{Shard, Shared};
use super::stats::ShardStats;
use super::{capacity, listener, mailbox};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// A running server: its shards' threads.
pub struct Server {
    addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    draining: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<[ShardStats]>,
    notes: Vec<String>,
}

impl Server {
    /// Bind, set up every shard's ring, and start serving. `make_app` builds
    /// each shard's application on that shard's thread.
    pub fn start<A, F>(config: Config, make_app: F) -> Result<Server, StartError>
    where
        A: App,
        F: Fn(usize) -> A + Send + Sync + 'static,
    {
        Self::start_inner(config, None, make_app)
    }

    /// [`start`](Self::start), and each shard also takes mail from
    /// threads outside the runtime through its external inbox: `inboxes`
    /// holds one per shard (`config.shards`, at least 1), in shard order,
    /// made by [`inboxes`](super::external::inboxes) with their senders.
    /// Without this, no shard watches for outside mail at all.
    pub fn start_with_inboxes<A, F>(
        config: Config,
        inboxes: Vec<ExternalInbox<A::Mail>>,
        make_app: F,
    ) -> Result<Server, StartError>
    where
        A: App,
        F: Fn(usize) -> A + Send + Sync + 'static,
    {
        Self::start_inner(config, Some(inboxes), make_app)
    }

    fn start_inner<A, F>(
        config: Config,
        inboxes: Option<Vec<ExternalInbox<A::Mail>>>,
        make_app: F,
    ) -> Result<Server, StartError>
    where
        A: App,
        F: Fn(usize) -> A + Send + Sync + 'static,
    {
        config.check()?;
        let shards = config.shards.max(1);
        let mut inboxes: Vec<Option<ExternalInbox<A::Mail>>> = match inboxes {
            None => (0..shards).map(|_| None).collect(),
            Some(v) if v.len() == shards => v.into_iter().map(Some).collect(),
            Some(v) => {
                return Err(StartError(format!(
                    "{} external inboxes for {shards} shards: give one per shard",
                    v.len()
                )))
            }
        };
        let nofile = raise_fd_limit();
        let table = nofile.min(config.max_connections_per_shard as u64) as u32;
        let listens = config.listen.is_some() || config.tls.is_some() || config.admin.is_some();
        let notes = match listens {
            true => capacity::notes(
                capacity::Kernel::read(nofile),
                shards,
                u64::from(table),
                u64::from(config.max_connections_per_shard),
                config.listen_backlog.max(0) as u64,
            ),
            false => Vec::new(),
        };
        // Each shard gets its own socket of each listener (SO_REUSEPORT).
        let mut listeners: Vec<Vec<Listening>> = (0..shards).map(|_| Vec::new()).collect();
        let mut bind = |listen: SocketAddr, tls: bool, admin: bool| {
            let (fds, addr) =
                listener::bind(listen, shards, config.listen_backlog, config.send_buffer)
                    .map_err(|e| StartError(format!("cannot listen on {listen}: {e}")))?;
            for (mine, fd) in listeners.iter_mut().zip(fds) {
                mine.push(Listening::new(fd, tls, admin, addr));
            }
            Ok::<_, StartError>(addr)
        };
        let addr = config.listen.map(|a| bind(a, false, false)).transpose()?;
        let tls_addr = config
            .tls
            .as_ref()
            .map(|t| bind(t.addr, true, false))
            .transpose()?;
        let admin_addr = config.admin.map(|a| bind(a, false, true)).transpose()?;
        let cores = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let stats: Arc<[ShardStats]> = (0..shards).map(|_| ShardStats::default()).collect();
        let draining = Arc::new(AtomicBool::new(false));
        let peers = PeerLimits::new(config.max_connections_per_ip, config.max_handshakes_per_ip);
        let make_app = Arc::new(make_app);
        let config = Arc::new(config);
        // The capacity is per shard, split over its peers: a mesh has n(n-1)
        // rings, and a fixed size per ring would grow memory with the square
        // of the shard count (16 shards: 640 MB at start-up). The ring is
        // also the bound on what a shard that fell behind makes others
        // hold: mail sent with `try_post` that does not fit comes back to
        // the app. A floor of 1,024 slots per ring keeps many-shard meshes
        // useful, unless the configured capacity is smaller still (tests).
        let per_peer = (config.mailbox_capacity / shards.saturating_sub(1).max(1))
            .max(1024.min(config.mailbox_capacity))
            .max(1);
        let mailboxes = mailbox::mesh::<A::Mail>(shards, per_peer);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
        let go = Arc::new(std::sync::Barrier::new(shards + 1));
        let failed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(shards);
        for (i, (listener, mailbox)) in listeners.into_iter().zip(mailboxes).enumerate() {
            let external = inboxes[i].take();
            let core = cores.get(i % cores.len().max(1)).copied();
            let shared = Shared {
                stats: stats.clone(),
                draining: draining.clone(),
                peers: peers.clone(),
            };
            let (config, make_app) = (config.clone(), make_app.clone());
            let (ready_tx, go, failed) = (ready_tx.clone(), go.clone(), failed.clone());
            let t = std::thread::Builder::new()
                .name(format!("ringfan-shard-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let shard = Shard::new(i, &config, table, listener, mailbox, shared);
                    let mut shard = match shard {
                        Ok(mut s) => {
                            s.external = external;
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            go.wait();
                            return;
                        }
                    };
                    // Every ring exists (so doorbells have somewhere to go)
                    // before any shard starts serving.
                    go.wait();
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let app = make_app(i);
                    shard.run(app);
                })
                .map_err(|e| StartError(format!("cannot start shard thread: {e}")))?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut first_err = None;
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err
                        .get_or_insert(StartError("a shard thread died during start-up".into()));
                }
            }
        }
        if first_err.is_some() {
            failed.store(true, Ordering::SeqCst);
        }
        go.wait();
        if let Some(e) = first_err {
            for t in threads {
                let _ = t.join();
            }
            return Err(e);
        }
        Ok(Server {
            addr,
            tls_addr,
            admin_addr,
            draining,
            threads,
            stats,
            notes,
        })
    }

    /// What caps the connection count, one line each, to say at start-up
    /// (see `capacity.rs`).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The bound address (None for a client-only runtime).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The TLS listener's bound address, if it has one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The admin listener's address, if `Config::admin` asked for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn stats(&self) -> &Arc<[ShardStats]> {
        &self.stats
    }

    /// A flag that, once set, drains and stops the server (for signal
    /// handlers).
    pub fn drain_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// Start draining: stop accepting, flush, send 1001, close.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Wait for every shard to finish.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: the kernel caps each
/// ring's direct descriptor table at it. Returns the limit in force (what
/// one shard's table can hold).
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Restrict this process (and the threads it starts later, which inherit
/// the mask) to the CPUs in `spec`, e.g. `1` or `0-3,8`: the load
/// generator's and the measurement examples' `--cpus`, so that a client
/// and the broker it measures do not share cores.
pub fn restrict_cpus(spec: &str) -> Result<(), String> {
    let mut cpus = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad --cpus {spec:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    // SAFETY: a zeroed cpu_set_t filled with CPU_SET, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(format!("CPU {c} out of range"));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "cannot run on CPUs {spec}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUs the calling thread may run on.
    fn allowed() -> Vec<usize> {
        // SAFETY: sched_getaffinity fills the zeroed set of the size passed.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    #[test]
    fn restrict_cpus_narrows_the_calling_thread_and_refuses_bad_lists() {
        // On its own thread: the mask is per thread, and other tests run
        // on theirs.
        std::thread::spawn(|| {
            let all = allowed();
            let last = *all.last().unwrap();
            restrict_cpus(&format!("{last}")).unwrap();
            assert_eq!(allowed(), vec![last]);
            let e = restrict_cpus("1-x").unwrap_err();
            assert!(e.contains("bad --cpus"), "{e}");
            let e = restrict_cpus("99999").unwrap_err();
            assert!(e.contains("out of range"), "{e}");
            assert_eq!(allowed(), vec![last]);
        })
        .join()
        .unwrap();
    }
}
