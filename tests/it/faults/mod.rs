//! When what phonecheck depends on fails: real `redis-server` and PostgreSQL processes stopped,
//! paused (`SIGSTOP`: connections hang rather than refuse) and restarted under a running server,
//! and vendors whose network misbehaves (a small TCP server in the test). Every wait is bounded
//! by a stated timeout; nothing paid is lost or paid twice. Seeded moments print their seed
//! (`PHONECHECK_FAULT_SEED` replays a run).

mod disk;
mod postgres;
mod redis;
mod stream;
mod vendor;

/// What the job faults share: a file job of distinct numbers, waiting for its end while its
/// store may be away, and the invariants checked after it.
mod job {
    use std::time::Duration;

    use crate::common::*;
    use phonecheck::pb;

    /// Uploads a TXT file of `count` distinct numbers `13{prefix}000NNNN` (NNNN from 1000: none
    /// of the simulator's magic numbers) as a line-status job.
    pub async fn start(server: &TestServer, prefix: &str, count: u32) -> pb::BatchJob {
        let mut file = String::from("mobile\n");
        for i in 0..count {
            file.push_str(&format!("13{prefix}000{:04}\n", 1_000 + i));
        }
        let spec = pb::BatchJobSpec {
            file_name: "list.txt".into(),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        };
        create_job(&mut jobs_client(server), spec, file.as_bytes(), 64 * 1024)
            .await
            .unwrap()
    }

    /// Waits until the simulator has billed `numbers` Thinksms calls (the job is under way).
    pub async fn paid(sim: &phonecheck::sim::SimServer, numbers: u64) {
        sim.stats()
            .wait_until(|s| s["thinksms"].billable >= numbers)
            .await;
    }

    /// The job once it has ended, followed with `WatchBatchJob` (the store is back by then; a
    /// watch cut while it reconnects is opened again, a bounded number of times). Fails the
    /// test past `bound`.
    pub async fn ended(server: &TestServer, id: &str, bound: Duration) -> pb::BatchJob {
        let following = async {
            let mut client = jobs_client(server);
            let mut last = None;
            for _ in 0..20 {
                let request = pb::WatchBatchJobRequest {
                    job_id: id.to_owned(),
                    ..Default::default()
                };
                let Ok(updates) = client.watch_batch_job(request).await else {
                    continue;
                };
                let mut updates = updates.into_inner();
                while let Ok(Some(update)) = updates.message().await {
                    last = update.job;
                }
                if let Some(job) = &last
                    && job.state() != pb::BatchJobState::Queued
                    && job.state() != pb::BatchJobState::Running
                {
                    return job.clone();
                }
            }
            panic!("the job could not be followed to its end: {last:?}")
        };
        tokio::time::timeout(bound, following)
            .await
            .expect("the job ends within its bound")
    }

    /// A second job over the same numbers, after the fault: it pays for nothing (none failed).
    pub async fn second_pass_pays_nothing(server: &TestServer, prefix: &str, count: u32) {
        let again = start(server, prefix, count).await;
        let job = ended(server, &again.id, Duration::from_secs(60)).await;
        let progress = job.progress.unwrap();
        assert_eq!(job.state, pb::BatchJobState::Succeeded as i32);
        assert_eq!(
            (progress.billable_calls, progress.cache_hits),
            (0, i64::from(count)),
            "a second pass pays only for what failed: nothing"
        );
    }

    /// The job succeeded with each of its `count` numbers answered once and paid for once
    /// (`bill`, the simulator's), and counts what the vendor billed.
    pub fn assert_paid_once(what: &str, job: &pb::BatchJob, count: u32, bill: u64) {
        let progress = job.progress.clone().unwrap();
        println!(
            "{what}: {:?}; {} numbers done, the job counts {} billable, the vendor billed {bill}",
            job.state(),
            progress.numbers_done,
            progress.billable_calls,
        );
        assert_eq!(job.state(), pb::BatchJobState::Succeeded, "{job:?}");
        assert_eq!(progress.numbers_done, i64::from(count));
        assert_eq!(progress.numbers_failed, 0, "{progress:?}");
        assert_eq!(bill, u64::from(count), "every number paid for exactly once");
        assert_eq!(
            progress.billable_calls as u64, bill,
            "the job counts what the vendor bills"
        );
    }
}
