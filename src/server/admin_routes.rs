//! The admin listener's routes on [`Node`], and the gathering of a query's
//! parts from every shard (see `admin.rs`).

use super::admin::{self, AdminMail, Ask, Gather, Gathering, TopicRow};
use super::Node;
use crate::broker::Mail;
use crate::runtime::{ConnId, HttpReply, Io};
use crate::ws::handshake::Request;
use crate::ws::http;
use std::sync::Arc;

type IoM<'a, 'b> = &'a mut Io<'b, Mail>;

impl Node {
    /// A request on the admin listener.
    pub(super) fn admin_http(
        &mut self,
        io: IoM<'_, '_>,
        conn: ConnId,
        request: &Request,
        body: &[u8],
    ) -> HttpReply {
        let head = &*request.method == "HEAD";
        let probe = |status: u16, text: &[u8]| {
            let r = http::response(status, &[], "text/plain", text, true);
            HttpReply::Close(if head { admin::head_only(r) } else { r })
        };
        match &*request.path {
            // Liveness: the shard's loop answers. Readiness: it also takes
            // new work (not draining). Both for GET and HEAD.
            "/healthz" | "/readyz" if !matches!(&*request.method, "GET" | "HEAD") => {
                HttpReply::Close(http::error(405, &[("Allow", "GET, HEAD")], "use GET"))
            }
            "/healthz" => probe(200, b"ok\n"),
            "/readyz" if io.draining() => probe(503, b"draining\n"),
            "/readyz" => probe(200, b"ready\n"),
            "/publish" => self.publish(io, conn, request, body),
            p if p.starts_with("/admin/") => {
                match admin::ask(request, self.admin.token.as_deref(), head) {
                    Ok(Ask::Cluster) => match &self.cluster {
                        Some(link) => {
                            let view = super::cluster::admin_view(link);
                            admin::json_reply(200, &view, head)
                        }
                        None => {
                            let body = serde_json::json!({"error": "not_found",
                                "message": "not in cluster mode (start ringfan with --cluster)"});
                            admin::json_reply(404, &body, head)
                        }
                    },
                    Ok(ask) => self.start_gather(io, conn, head, ask),
                    Err(reply) => reply,
                }
            }
            _ if head => HttpReply::Close(self.answer_head(io, request)),
            _ => HttpReply::Close(self.answer(io, request)),
        }
    }

    /// Ask every shard (this one directly) for its part of `ask`.
    fn start_gather(&mut self, io: IoM<'_, '_>, conn: ConnId, head: bool, ask: Ask) -> HttpReply {
        let shards = io.shards();
        let (what, targets): (Gathering, Vec<usize>) = match &ask {
            Ask::Conns(listing) => (
                Gathering::Conns {
                    listing: *listing,
                    total: 0,
                    rows: Vec::new(),
                },
                (0..shards).collect(),
            ),
            Ask::Topics { limit, .. } => (
                Gathering::Topics {
                    limit: *limit,
                    rows: Vec::new(),
                    counting: false,
                },
                (0..shards).collect(),
            ),
            Ask::Disconnect { shard, .. } if *shard >= shards => {
                return admin::finished(Gather {
                    conn,
                    head,
                    waiting: 0,
                    what: Gathering::Disconnect { ok: false },
                });
            }
            Ask::Disconnect { shard, .. } => (Gathering::Disconnect { ok: false }, vec![*shard]),
            // Answered in `admin_http`, never gathered.
            Ask::Cluster => {
                return HttpReply::Close(http::error(404, &[], "no such admin endpoint"));
            }
        };
        let req = self.admin.gathers.insert(Gather {
            conn,
            head,
            waiting: targets.len(),
            what,
        }) as u32;
        let outer = self.admin.starting.replace(req);
        for shard in targets {
            let query = match &ask {
                Ask::Conns(listing) => AdminMail::Conns {
                    req,
                    listing: *listing,
                },
                Ask::Topics { prefix, limit } => AdminMail::Topics {
                    req,
                    prefix: prefix.clone(),
                    // One more than asked: the answer says when it is cut.
                    limit: limit + 1,
                },
                Ask::Disconnect { conn, .. } => AdminMail::Disconnect { req, conn: *conn },
                Ask::Cluster => continue, // no shard is asked (see above)
            };
            self.admin_send(io, shard, query);
        }
        self.admin.starting = outer;
        // Every part may have come in already (one shard, or a local
        // disconnect): then the answer is ready now.
        match self.take_finished(req) {
            Some(reply) => reply,
            None => HttpReply::Later,
        }
    }

    /// Mail to `shard`'s admin handler; this shard's is called at once.
    fn admin_send(&mut self, io: IoM<'_, '_>, shard: usize, m: AdminMail) {
        let me = io.shard();
        if shard == me {
            self.admin_mail(io, me, m);
        } else {
            // Admin queries are rare and small: `post` (a backlog when the
            // ring is full) rather than a refusal.
            io.post(shard, Mail::Host(Box::new(m)));
        }
    }

    /// Admin mail from shard `from` (or from this shard itself).
    pub(super) fn admin_mail(&mut self, io: IoM<'_, '_>, from: usize, m: AdminMail) {
        match m {
            AdminMail::Conns { req, listing } => {
                let (total, rows) = admin::local_conns(&self.broker, io, listing);
                self.admin_send(io, from, AdminMail::ConnRows { req, total, rows });
            }
            AdminMail::Topics { req, prefix, limit } => {
                let rows = self
                    .broker
                    .topics(&prefix, limit, io.now_ms())
                    .into_iter()
                    .map(|t| TopicRow {
                        topic: t.topic,
                        seq: t.seq,
                        idle_ms: t.idle_ms,
                        retained_bytes: t.retained_bytes,
                        subscribers: 0,
                    })
                    .collect();
                self.admin_send(io, from, AdminMail::TopicRows { req, rows });
            }
            AdminMail::Count { req, topics } => {
                let counts = topics
                    .iter()
                    .map(|t| self.broker.subscribers_of(t))
                    .collect();
                self.admin_send(io, from, AdminMail::Counts { req, counts });
            }
            AdminMail::Disconnect { req, conn } => {
                let ok = admin::disconnect(io, conn);
                self.admin_send(io, from, AdminMail::Disconnected { req, ok });
            }
            AdminMail::ConnRows { req, total, rows } => self.part(io, req, |w| {
                if let Gathering::Conns {
                    total: t, rows: r, ..
                } = w
                {
                    *t += total;
                    r.extend(rows);
                }
            }),
            AdminMail::TopicRows { req, rows } => self.part(io, req, |w| {
                if let Gathering::Topics { rows: r, .. } = w {
                    r.extend(rows);
                }
            }),
            AdminMail::Counts { req, counts } => self.part(io, req, |w| {
                if let Gathering::Topics { rows, .. } = w {
                    for (row, n) in rows.iter_mut().zip(counts) {
                        row.subscribers += n;
                    }
                }
            }),
            AdminMail::Disconnected { req, ok } => self.part(io, req, |w| {
                if let Gathering::Disconnect { ok: o } = w {
                    *o |= ok;
                }
            }),
        }
    }

    /// One shard's part of gather `req` came in.
    fn part(&mut self, io: IoM<'_, '_>, req: u32, add: impl FnOnce(&mut Gathering)) {
        let Some(g) = self.admin.gathers.get_mut(req as usize) else {
            return;
        };
        add(&mut g.what);
        g.waiting -= 1;
        if g.waiting > 0 {
            return;
        }
        // The topics are in: now every shard counts their subscribers.
        if let Gathering::Topics {
            rows,
            counting: counting @ false,
            limit,
        } = &mut g.what
        {
            *counting = true;
            rows.sort_by(|a, b| a.topic.cmp(&b.topic));
            rows.truncate(*limit + 1);
            if !rows.is_empty() {
                let topics: Arc<[Box<str>]> = rows.iter().map(|r| r.topic.clone()).collect();
                g.waiting = io.shards();
                for shard in 0..io.shards() {
                    let topics = topics.clone();
                    self.admin_send(io, shard, AdminMail::Count { req, topics });
                }
                return;
            }
        }
        // Answered by `start_gather` when its parts all came in while it
        // ran (this shard's own, synchronously); otherwise now.
        if self.admin.starting != Some(req) {
            let conn = g.conn;
            if let Some(reply) = self.take_finished(req) {
                io.http_reply(conn, reply);
            }
        }
    }

    /// The answer to gather `req` if every part is in (it is forgotten).
    fn take_finished(&mut self, req: u32) -> Option<HttpReply> {
        let done = self
            .admin
            .gathers
            .get(req as usize)
            .is_some_and(|g| g.waiting == 0);
        done.then(|| admin::finished(self.admin.gathers.remove(req as usize)))
    }
}
