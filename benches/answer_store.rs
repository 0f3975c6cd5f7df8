//! The answer store's workload on two embedded engines, side by side: SQLite through sqlx (the
//! store phonecheck ships, `phonecheck::store::AnswerStore`) and redb (a pure-Rust B-tree
//! store), so the choice rests on figures (BENCHMARKS.md, "The answer store").
//!
//!     cargo bench --bench answer_store            # 1,000,000 answers
//!     cargo bench --bench answer_store -- 200000  # another count
//!
//! The workload is phonecheck's: answers keyed by two 64-bit keyed hashes, a line-status answer
//! of 15 bytes; written in batches of 4,096 (the writer task's largest), one transaction each;
//! point reads of stored answers and of absent ones (a new number); a purge of a third of them
//! by check and age; the file's size; the time to reopen. redb gets the same secondary index
//! (check, fetched_at) that SQLite has, so that a purge need not scan.

use std::time::{Duration, Instant};

use phonecheck::store::{AnswerRow, AnswerStore, StoredAnswer};
use redb::{Database, Durability, ReadableTable, TableDefinition};

const ANSWERS: TableDefinition<(u64, u64), (u8, i64, &[u8])> = TableDefinition::new("answers");
const AGE: TableDefinition<(u8, i64, u64, u64), ()> = TableDefinition::new("answers_age");
const BATCH: usize = 4_096;
const READS: u64 = 100_000;

/// The i-th answer: keys spread like hashes, three checks' worth of ages.
fn answer(i: u64) -> AnswerRow {
    let mix = |x: u64| x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
    AnswerRow {
        number: mix(i) as i64,
        variant: mix(i ^ 0x5555) as i64,
        answer: StoredAnswer {
            check: 0,
            fetched_at: 1_700_000_000_000 + i as i64,
            data: b"\x01\x00\x00\x01\x01\x001\x06\x00silent".to_vec(),
        },
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

struct Row {
    engine: String,
    write: Duration,
    hits: Duration,
    misses: Duration,
    purge: Duration,
    purged: u64,
    reopen: Duration,
    bytes: u64,
    rss: f64,
}

impl Row {
    fn print(&self, n: u64) {
        let per_s = |d: Duration, k: u64| k as f64 / d.as_secs_f64();
        println!(
            "| {} | {:.1} s ({:.0}/s) | {:.1} µs ({:.0}/s) | {:.1} µs | {:.2} s ({}) | {:.0} ms | {:.1} MiB ({:.0} B/answer) | {:.0} MiB |",
            self.engine,
            self.write.as_secs_f64(),
            per_s(self.write, n),
            self.hits.as_secs_f64() * 1e6 / READS as f64,
            per_s(self.hits, READS),
            self.misses.as_secs_f64() * 1e6 / READS as f64,
            self.purge.as_secs_f64(),
            self.purged,
            self.reopen.as_secs_f64() * 1e3,
            self.bytes as f64 / 1048576.0,
            self.bytes as f64 / n as f64,
            self.rss,
        );
    }
}

async fn sqlite(n: u64) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = AnswerStore::open(dir.path(), None).await.unwrap();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        batch.push(answer(i));
        if batch.len() == BATCH {
            store.put(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.put(&batch).await.unwrap();
    let write = started.elapsed();
    let started = Instant::now();
    for i in 0..READS {
        let a = answer(i * 7 % n);
        assert!(store.get(a.number, a.variant).await.unwrap().is_some());
    }
    let hits = started.elapsed();
    let started = Instant::now();
    for i in 0..READS {
        let a = answer(n + i);
        assert!(store.get(a.number, a.variant).await.unwrap().is_none());
    }
    let misses = started.elapsed();
    let rss = rss_mib();
    store.close().await;
    let started = Instant::now();
    let (store, _) = AnswerStore::open(dir.path(), None).await.unwrap();
    let a = answer(1);
    store.get(a.number, a.variant).await.unwrap().unwrap();
    let reopen = started.elapsed();
    let started = Instant::now();
    let before = 1_700_000_000_000 + (n / 3) as i64;
    let mut purged = 0;
    loop {
        let step = store.purge(0, before, 10_000).await.unwrap();
        purged += step;
        if step < 10_000 {
            break;
        }
    }
    let purge = started.elapsed();
    store.close().await;
    Row {
        engine: "SQLite 3 (sqlx 0.9, WAL, synchronous=NORMAL)".into(),
        write,
        hits,
        misses,
        purge,
        purged,
        reopen,
        bytes: dir_size(dir.path()),
        rss,
    }
}

fn redb_open(path: &std::path::Path) -> Database {
    redb::Builder::new()
        // Its default cache is 1 GiB; SQLite's four connections keep about 8 MiB.
        .set_cache_size(16 << 20)
        .create(path)
        .unwrap()
}

fn redb_run(n: u64, durability: Durability, label: &str) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.redb");
    let db = redb_open(&path);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(durability);
        {
            let mut answers = tx.open_table(ANSWERS).unwrap();
            let mut age = tx.open_table(AGE).unwrap();
            for j in i..(i + BATCH as u64).min(n) {
                let a = answer(j);
                let key = (a.number as u64, a.variant as u64);
                answers
                    .insert(
                        key,
                        (
                            a.answer.check,
                            a.answer.fetched_at,
                            a.answer.data.as_slice(),
                        ),
                    )
                    .unwrap();
                age.insert((a.answer.check, a.answer.fetched_at, key.0, key.1), ())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        i += BATCH as u64;
    }
    let write = started.elapsed();
    let read = |db: &Database, k: u64, present: bool| {
        let a = answer(k);
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(ANSWERS).unwrap();
        let got = table
            .get((a.number as u64, a.variant as u64))
            .unwrap()
            .map(|v| v.value().2.to_vec());
        assert_eq!(got.is_some(), present);
    };
    let started = Instant::now();
    for i in 0..READS {
        read(&db, i * 7 % n, true);
    }
    let hits = started.elapsed();
    let started = Instant::now();
    for i in 0..READS {
        read(&db, n + i, false);
    }
    let misses = started.elapsed();
    let rss = rss_mib();
    // A clean close: an unclean one makes the next open repair (scan) the file.
    {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::Immediate);
        tx.commit().unwrap();
    }
    drop(db);
    let started = Instant::now();
    let db = redb_open(&path);
    read(&db, 1, true);
    let reopen = started.elapsed();
    let started = Instant::now();
    let before = 1_700_000_000_000 + (n / 3) as i64;
    let mut purged = 0;
    loop {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(durability);
        let step = {
            let mut answers = tx.open_table(ANSWERS).unwrap();
            let mut age = tx.open_table(AGE).unwrap();
            let old: Vec<(u8, i64, u64, u64)> = age
                .range((0u8, i64::MIN, 0u64, 0u64)..(0u8, before, 0u64, 0u64))
                .unwrap()
                .take(10_000)
                .map(|e| e.unwrap().0.value())
                .collect();
            for key in &old {
                age.remove(key).unwrap();
                answers.remove((key.2, key.3)).unwrap();
            }
            old.len() as u64
        };
        tx.commit().unwrap();
        purged += step;
        if step < 10_000 {
            break;
        }
    }
    let purge = started.elapsed();
    drop(db);
    Row {
        engine: label.into(),
        write,
        hits,
        misses,
        purge,
        purged,
        reopen,
        bytes: dir_size(dir.path()),
        rss,
    }
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("answer store engines: {n} answers, batches of {BATCH}, {READS} reads each way");
    println!(
        "| engine | write | read, stored (sequential) | read, absent | purge a third | reopen + first read | on disk | process RSS after reads |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    runtime.block_on(sqlite(n)).print(n);
    redb_run(
        n,
        Durability::Immediate,
        "redb 2.6 (Durability::Immediate: fsync per commit)",
    )
    .print(n);
    redb_run(
        n,
        Durability::Eventual,
        "redb 2.6 (Durability::Eventual: no fsync)",
    )
    .print(n);
}
