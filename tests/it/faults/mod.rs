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
    use std::time::{Duration, Instant};

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

    /// The job once it is neither queued nor running; asked as a client would (a call may fail
    /// while the store is away). Fails the test past `bound` from `started`.
    pub async fn ended(
        server: &TestServer,
        id: &str,
        started: Instant,
        bound: Duration,
    ) -> pb::BatchJob {
        let mut last = None;
        loop {
            assert!(
                started.elapsed() < bound,
                "the job did not end within {bound:?}: {last:?}"
            );
            let request = pb::GetBatchJobRequest {
                job_id: id.to_owned(),
            };
            let mut client = jobs_client(server);
            let call = tokio::time::timeout(Duration::from_secs(5), client.get_batch_job(request));
            if let Ok(Ok(response)) = call.await
                && let Some(job) = response.into_inner().job
            {
                if job.state() != pb::BatchJobState::Queued
                    && job.state() != pb::BatchJobState::Running
                {
                    return job;
                }
                last = Some((job.state(), job.progress));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A second job over the same numbers, after the fault: it pays for nothing (none failed).
    pub async fn second_pass_pays_nothing(server: &TestServer, prefix: &str, count: u32) {
        let again = start(server, prefix, count).await;
        let job = ended(server, &again.id, Instant::now(), Duration::from_secs(60)).await;
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
