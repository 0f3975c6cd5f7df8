//! Paid answers, in two tiers: the hot tier in memory ([`HotTier`], bounded by bytes) and the
//! answer store on disk ([`AnswerStore`], `answers.db` in the data directory), so that a restart
//! never pays for an answer twice. One [`Answers`] serves every provider of the engine; Redis,
//! when configured, sits behind it (see `dispatch.rs`).
//!
//! Keys are keyed hashes (HMAC-SHA256, first 8 bytes) of the number, and of the provider, check,
//! number and KYC inputs: the number itself is never stored. The key is `[redis] hash_key`'s
//! (derived, so the Redis key itself is not used twice) when Redis is configured, else a random
//! key kept in the data directory (`answers.key`).
//!
//! Every paid answer goes to the hot tier at once and to the store through a writer task that
//! commits batches (WAL, no `fsync` per commit): the vendor path never waits for the disk. When
//! the store cannot be written (disk full, `cache.max_disk`), answers stay in memory only: a log
//! line, `phonecheck_answer_store_degraded` at 1, and writes are tried again with each batch.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use tokio::sync::{mpsc, oneshot};

mod cache;
mod codec;
mod hot;
mod presence;
mod read;

pub use read::Wanted;

use crate::domain::{Check, CheckData, KycInput, PerCheck};
use crate::store::{AnswerRow, AnswerStore, AnswerStoreStats, Opened, StoreError, StoredAnswer};
pub use cache::{CacheConfig, Share, parse_bytes};
use codec::{Decoded, Interner};
pub use hot::{AnswerId, ENTRY_BYTES, HotStats};
use hot::{HotEntry, HotTier};
use presence::Presence;

/// The key file, when no `[redis] hash_key` is configured.
pub const KEY_FILE: &str = "answers.key";
/// Answers queued for the writer before the vendor path waits for it.
const QUEUE: usize = 65_536;
/// Most answers in one transaction.
const BATCH: usize = 4_096;
/// How long the writer waits for a batch to fill before it commits a small one.
const LINGER: Duration = Duration::from_millis(10);
/// Rows deleted per purge step.
const PURGE_STEP: u32 = 10_000;

/// Work for the writer, in order: a forget after a write removes what was written.
enum Write {
    Row(AnswerRow),
    Forget(Vec<i64>, oneshot::Sender<Result<u64, StoreError>>),
    Flush(oneshot::Sender<()>),
}

/// A usable answer from either tier.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The answer.
    pub data: CheckData,
    /// When the vendor gave it.
    pub fetched_at: SystemTime,
    /// Which tier had it.
    pub tier: Tier,
}

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The hot tier.
    Memory,
    /// The answer store.
    Store,
}

/// What the answer cache holds and how it does, for `ListProviders`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnswerStats {
    /// The hot tier.
    pub hot: HotStats,
    /// The store, when there is one.
    pub store: Option<AnswerStoreStats>,
    /// Lookups (one per check of a number that a vendor would answer).
    pub lookups: u64,
    /// Lookups answered from memory or the store.
    pub hits: u64,
    /// True while the store cannot be written (answers are kept in memory only).
    pub degraded: bool,
}

/// The answer cache of an engine.
pub struct Answers {
    hot: HotTier,
    interner: Interner,
    key: Vec<u8>,
    ttl: PerCheck<Duration>,
    /// Whether a tenant's answers are its own (`cache.share`).
    share: Share,
    store: Option<AnswerStore>,
    /// Which answers the store may hold (no disk read for the others).
    presence: Presence,
    writer: Option<mpsc::Sender<Write>>,
    lookups: AtomicU64,
    hits: AtomicU64,
    degraded: Arc<AtomicBool>,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("hot", &self.hot)
            .field("store", &self.store.as_ref().map(AnswerStore::path))
            .finish_non_exhaustive()
    }
}

impl Answers {
    /// Answers in memory only (`cache.store = false`, tests), under a random key.
    pub fn memory(cache: &CacheConfig) -> Arc<Answers> {
        Arc::new(Self::new(cache, rand::random::<[u8; 32]>().to_vec(), None))
    }

    fn new(cache: &CacheConfig, key: Vec<u8>, store: Option<AnswerStore>) -> Answers {
        Answers {
            hot: HotTier::new(cache.max_memory, cache.max_entries),
            interner: Interner::default(),
            key,
            ttl: cache.ttl,
            share: cache.share,
            presence: if store.is_some() {
                Presence::default()
            } else {
                Presence::empty()
            },
            store,
            writer: None,
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            degraded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens the answer cache of `data_dir`: the store (unless `cache.store` is off) with its
    /// writer and purge tasks. `key` is the deployment's hash key when it has one. Never fails:
    /// a store that cannot be opened leaves the answers in memory, with a log line and the
    /// degraded metric. Must be called within a Tokio runtime.
    pub async fn open(cache: &CacheConfig, data_dir: &Path, key: Option<Vec<u8>>) -> Arc<Answers> {
        if !cache.store {
            return Self::memory(cache);
        }
        let (key, new_key) = match key {
            Some(key) => (key, false),
            None => match local_key(data_dir) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        dir = %data_dir.display(),
                        "answer store: cannot read or create its key; paid answers are kept in \
                         memory only and a restart pays for them again"
                    );
                    let answers = Self::memory(cache);
                    degrade(&answers.degraded, true);
                    return answers;
                }
            },
        };
        let store = match AnswerStore::open(data_dir, cache.max_disk).await {
            Ok((store, opened)) => {
                match opened {
                    Opened::Existing => {
                        tracing::info!(path = %store.path().display(), "answer store opened")
                    }
                    Opened::Created => {
                        tracing::info!(path = %store.path().display(), "answer store created")
                    }
                    Opened::Rebuilt(reason) => tracing::error!(
                        path = %store.path().display(),
                        %reason,
                        "answer store: the file could not be used and was replaced by an empty \
                         one; its answers will be paid again as they are asked"
                    ),
                }
                Some(store)
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    dir = %data_dir.display(),
                    "answer store: cannot be opened; paid answers are kept in memory only and a \
                     restart pays for them again"
                );
                None
            }
        };
        let Some(store) = store else {
            let answers = Self::new(cache, key, None);
            degrade(&answers.degraded, true);
            return Arc::new(answers);
        };
        if new_key {
            // Answers kept under another key can never be found again.
            match store.forget_all().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(answers = n, "answer store: new key; old answers dropped"),
                Err(e) => tracing::warn!(error = %e, "answer store: new key; old answers kept"),
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut answers = Self::new(cache, key, Some(store.clone()));
        answers.writer = Some(tx);
        degrade(&answers.degraded, false);
        let answers = Arc::new(answers);
        tokio::spawn(writer(store.clone(), rx, answers.degraded.clone()));
        // Until the stored answers are all in the filter, every miss reads the disk.
        let loading = Arc::downgrade(&answers);
        let scan = store.clone();
        tokio::spawn(async move {
            let keys = scan
                .for_each_key(|number, variant| {
                    if let Some(answers) = loading.upgrade() {
                        answers.presence.insert(&AnswerId {
                            number: number as u64,
                            variant: variant as u64,
                        });
                    }
                })
                .await;
            match (keys, loading.upgrade()) {
                (Ok(_), Some(answers)) => answers.presence.set_ready(),
                (Err(e), _) => tracing::warn!(
                    error = %e,
                    "answer store: its answers could not be listed; every miss reads the disk"
                ),
                _ => {}
            }
        });
        tokio::spawn(purger(
            Arc::downgrade(&answers),
            store,
            cache.purge_interval,
        ));
        answers
    }

    fn ttl(&self, check: Check) -> Duration {
        self.ttl[check]
    }

    fn mac(&self, parts: &[&[u8]]) -> u64 {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(&[0]);
            }
            mac.update(part);
        }
        let digest = mac.finalize().into_bytes();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// The keyed hash standing for a number.
    pub fn number_hash(&self, e164: &str) -> u64 {
        self.mac(&[b"number", e164.as_bytes()])
    }

    /// Whose answers `tenant` is served: `Some(tenant)` when each tenant's answers are its own
    /// (`cache.share = "tenant"`), `None` when every tenant's are shared.
    pub fn scope<'a>(&self, tenant: &'a str) -> Option<&'a str> {
        (self.share == Share::Tenant).then_some(tenant)
    }

    /// The identity of the answer of `provider` to `check` for `e164` with these KYC inputs,
    /// within `scope` (the tenant that paid for it, or `None` for an answer every tenant
    /// shares). The number's own hash is the same in every scope, so that forgetting a number
    /// reaches every tenant's answers about it.
    pub fn id(
        &self,
        provider: &str,
        check: Check,
        e164: &str,
        kyc: Option<&KycInput>,
        scope: Option<&str>,
    ) -> AnswerId {
        let kyc = kyc
            .and_then(|k| serde_json::to_vec(k).ok())
            .unwrap_or_default();
        let mut parts: Vec<&[u8]> = vec![
            b"answer",
            provider.as_bytes(),
            check.as_str().as_bytes(),
            e164.as_bytes(),
            &kyc,
        ];
        if let Some(tenant) = scope {
            parts.extend([b"tenant".as_slice(), tenant.as_bytes()]);
        }
        AnswerId {
            number: self.number_hash(e164),
            variant: self.mac(&parts),
        }
    }

    fn keep(&self, id: AnswerId, decoded: &Decoded, fetched_at: u64, encoded: &[u8]) {
        let entry = HotEntry {
            value: self.interner.compact(&decoded.data, encoded),
            fetched_at,
        };
        self.hot.insert(id, entry);
    }

    /// Holds a paid answer in memory at once; returns the row to [`persist`](Self::persist).
    /// `withheld`: its platform profiles were removed before it came here.
    pub fn hold(
        &self,
        id: AnswerId,
        check: Check,
        data: &CheckData,
        fetched_at: SystemTime,
        withheld: bool,
    ) -> AnswerRow {
        let fetched_at = u64::try_from(
            fetched_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let encoded = codec::encode(data, withheld);
        self.presence.insert(&id);
        let decoded = Decoded {
            data: data.clone(),
            withheld,
        };
        self.keep(id, &decoded, fetched_at, &encoded);
        AnswerRow {
            number: id.number as i64,
            variant: id.variant as i64,
            answer: StoredAnswer {
                check: check as u8,
                fetched_at: i64::try_from(fetched_at).unwrap_or(i64::MAX),
                data: encoded,
            },
        }
    }

    /// Queues held answers for the store. Waits only when the writer is [`QUEUE`] answers
    /// behind.
    pub async fn persist(&self, rows: Vec<AnswerRow>) {
        let Some(writer) = &self.writer else {
            return;
        };
        for row in rows {
            if writer.send(Write::Row(row)).await.is_err() {
                return;
            }
        }
    }

    /// Waits until every answer queued so far is written (or failed to be).
    pub async fn flush(&self) {
        if let Some(writer) = &self.writer {
            let (tx, rx) = oneshot::channel();
            if writer.send(Write::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Forgets every answer about these numbers (E.164) in memory and in the store; returns how
    /// many were forgotten.
    pub async fn forget(&self, numbers: &[String]) -> Result<u64, StoreError> {
        let hashes: HashSet<u64> = numbers.iter().map(|n| self.number_hash(n)).collect();
        self.forget_hashes(&hashes).await
    }

    /// Forgets every answer about the numbers of these keyed hashes ([`number_hash`]).
    ///
    /// [`number_hash`]: Self::number_hash
    pub async fn forget_hashes(&self, hashes: &HashSet<u64>) -> Result<u64, StoreError> {
        let mut forgotten = self.hot.forget(hashes);
        if let Some(writer) = &self.writer {
            let (tx, rx) = oneshot::channel();
            let numbers = hashes.iter().map(|&h| h as i64).collect();
            if writer.send(Write::Forget(numbers, tx)).await.is_ok() {
                // The hot tier's entries are, with few exceptions, in the store as well: count
                // the store's.
                forgotten = forgotten.max(rx.await.unwrap_or(Ok(0))?);
            }
        }
        Ok(forgotten)
    }

    /// What the cache holds and how it does; answers still queued for the store are written
    /// first, so that the figures include them.
    pub async fn stats(&self) -> AnswerStats {
        self.flush().await;
        let store = match &self.store {
            Some(store) => store.stats().await.ok(),
            None => None,
        };
        let hot = self.hot.stats();
        metrics::gauge!(crate::metrics::ANSWER_HOT_ENTRIES).set(hot.entries as f64);
        AnswerStats {
            hot,
            store,
            lookups: self.lookups.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
        }
    }
}

/// The data directory's answer key: `(key, created now)`.
fn local_key(data_dir: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match hex::decode(text.trim()) {
            Ok(key) if key.len() >= 16 => return Ok((key, false)),
            _ => {
                tracing::warn!(path = %path.display(), "answer store: key file unusable; a new key")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let key = rand::random::<[u8; 32]>().to_vec();
    let temporary = data_dir.join(format!("{KEY_FILE}.new"));
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(hex::encode(&key).as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    Ok((key, true))
}

fn now_millis() -> u64 {
    millis(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sets the degraded state (and its metric); logs the change.
fn degrade(flag: &AtomicBool, degraded: bool) {
    metrics::gauge!(crate::metrics::ANSWER_STORE_DEGRADED).set(if degraded { 1.0 } else { 0.0 });
    flag.store(degraded, Ordering::Relaxed);
}

/// Commits queued answers in batches; when a batch cannot be written the store is degraded (its
/// answers stay in memory) until one can.
async fn writer(store: AnswerStore, mut queue: mpsc::Receiver<Write>, degraded: Arc<AtomicBool>) {
    let mut rows: Vec<AnswerRow> = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut work = vec![first];
        if matches!(work[0], Write::Row(_)) {
            tokio::time::sleep(LINGER).await;
        }
        while work.len() < BATCH {
            match queue.try_recv() {
                Ok(more) => work.push(more),
                Err(_) => break,
            }
        }
        for item in work {
            match item {
                Write::Row(row) => rows.push(row),
                Write::Forget(numbers, reply) => {
                    write(&store, &mut rows, &degraded).await;
                    let _ = reply.send(store.forget(&numbers).await);
                }
                Write::Flush(reply) => {
                    write(&store, &mut rows, &degraded).await;
                    let _ = reply.send(());
                }
            }
        }
        write(&store, &mut rows, &degraded).await;
    }
    store.close().await;
}

async fn write(store: &AnswerStore, rows: &mut Vec<AnswerRow>, degraded: &AtomicBool) {
    if rows.is_empty() {
        return;
    }
    let count = rows.len() as u64;
    match store.put(rows).await {
        Ok(()) => {
            metrics::counter!(crate::metrics::ANSWER_STORE_WRITES, "result" => "written")
                .increment(count);
            if degraded.load(Ordering::Relaxed) {
                tracing::warn!("answer store: writable again; paid answers are stored again");
                degrade(degraded, false);
            }
        }
        Err(e) => {
            metrics::counter!(crate::metrics::ANSWER_STORE_WRITES, "result" => "failed")
                .increment(count);
            if !degraded.load(Ordering::Relaxed) {
                let why = if crate::store::is_full(&e) {
                    "the disk (or cache.max_disk) is full"
                } else {
                    "the store failed"
                };
                tracing::error!(
                    error = %e,
                    "answer store: cannot write ({why}); paid answers are still returned and kept \
                     in memory, but a restart will pay for them again"
                );
                degrade(degraded, true);
            }
        }
    }
    rows.clear();
}

/// Deletes expired answers every `every`, per check, in small steps, while the cache lives.
async fn purger(answers: Weak<Answers>, store: AnswerStore, every: Duration) {
    loop {
        let Some(ttl) = answers.upgrade().map(|a| a.ttl) else {
            return;
        };
        let now = i64::try_from(now_millis()).unwrap_or(i64::MAX);
        let mut purged = 0;
        for check in Check::ALL {
            let before = now.saturating_sub(i64::try_from(millis(ttl[check])).unwrap_or(i64::MAX));
            loop {
                match store.purge(check as u8, before, PURGE_STEP).await {
                    Ok(n) => {
                        purged += n;
                        if n < u64::from(PURGE_STEP) {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "answer store: purging expired answers failed");
                        break;
                    }
                }
            }
        }
        if purged > 0 {
            tracing::info!(answers = purged, "answer store: expired answers purged");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests;
