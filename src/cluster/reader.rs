//! Reading the stream back through an ephemeral pull consumer: catch-up
//! after a reconnect (from a sequence) and wildcard snapshots (the last
//! message of each topic), docs/cluster.md §4-5.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use futures_util::StreamExt;

use super::task::Shared;
use super::wire::{self, RF_SEQ};
use super::{BridgeStats, Stored};

/// Messages asked for per fetch: 1,024 copies of ~150 B is ~150 KB a
/// round trip, and a shard's inbox (65,536) takes many fetches.
const FETCH: usize = 1024;

/// An ephemeral consumer, read in batches until nothing is pending.
pub(super) struct Reader {
    stream: Stream<()>,
    consumer: Consumer<pull::Config>,
    name: String,
    done: bool,
}

impl Reader {
    /// A consumer of the stream's messages under `filter`, from `policy`.
    pub(super) async fn open(
        sh: &Shared,
        js: &Context,
        filter: &str,
        policy: DeliverPolicy,
    ) -> Result<Reader, async_nats::Error> {
        let stream = js.get_stream_no_info(&sh.cfg.stream).await?;
        let config = pull::Config {
            deliver_policy: policy,
            ack_policy: AckPolicy::None,
            filter_subject: filter.to_string(),
            // In memory, on the leader only, gone by itself 30 s after
            // its last fetch if `close` never reaches the server.
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let mut consumer = stream.create_consumer(config).await?;
        let name = consumer.info().await?.name.clone();
        Ok(Reader {
            stream,
            consumer,
            name,
            done: false,
        })
    }

    /// The next batch (each message as a copy with its owner shard), or
    /// `None` once nothing was pending. It ends when the consumer has
    /// nothing pending: messages stored meanwhile come in the batches too.
    pub(super) async fn next(
        &mut self,
        sh: &Shared,
    ) -> Result<Option<Vec<(usize, Stored)>>, async_nats::Error> {
        if self.done {
            return Ok(None);
        }
        let mut batch = self.consumer.fetch().max_messages(FETCH).messages().await?;
        let mut out = Vec::new();
        let (mut got, mut pending) = (0usize, 0u64);
        while let Some(m) = batch.next().await {
            let m = m?;
            got += 1;
            let (stream_seq, left) = {
                let info = m.info()?;
                (info.stream_sequence, info.pending)
            };
            pending = left;
            let m = m.message;
            let topic = wire::topic_of_publish(&sh.cfg.prefix, m.subject.as_str());
            let rf_seq = wire::header_u64(m.headers.as_ref(), RF_SEQ);
            let lens = wire::lens_of(m.headers.as_ref());
            let (Some(topic), Some(rf_seq), Some(lens)) = (topic, rf_seq, lens) else {
                BridgeStats::inc(&sh.stats.copies_bad);
                continue;
            };
            let shard = (sh.owner)(topic) % sh.shards;
            let copy = Stored {
                topic: topic.into(),
                stream_seq,
                last_stream_seq: 0,
                rf_seq,
                payload: m.payload,
                lens,
            };
            out.push((shard, copy));
        }
        self.done = got == 0 || pending == 0;
        if got == 0 {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Deletes the consumer (best effort: it expires by itself anyway).
    pub(super) async fn close(self) {
        let _ = self.stream.delete_consumer(&self.name).await;
    }
}
