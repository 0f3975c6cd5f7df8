//! Replicas sharing state through Redis (a real `redis-server` started by the test): they share
//! the answer cache, pay once for a number asked of both at the same instant, and collect each
//! other's asynchronous submissions; Redis going away fails paid calls closed (not billed, no
//! crash) until it comes back. (The shared quota has a test binary of its own: redis_quota.rs.)

use std::time::Duration;

/// Tenants' budgets and rates shared through Redis.
#[path = "redis_limits.rs"]
mod limits;

use crate::common::*;
use phonecheck::config::{Config, SecretRef};
use phonecheck::pb;
use phonecheck::replicas::RedisConfig;
use phonecheck::sim::{self, SimConfig};

/// All four vendors live against `sim`, sharing state through the Redis on `redis_port`.
async fn vendors_replica(sim: &sim::SimServer, redis_port: u16) -> TestServer {
    vendors_replica_with(sim, redis_port, |_| {}).await
}

async fn vendors_replica_with(
    sim: &sim::SimServer,
    redis_port: u16,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vendors_config(sim, dir.path(), &Secrets::right(), "SM3");
    adjust(&mut config);
    config.redis = Some(RedisConfig {
        url: format!("redis://127.0.0.1:{redis_port}/0"),
        password: None,
        hash_key: SecretRef::File(hash_key_file(dir.path())),
        key_prefix: "phonecheck".to_owned(),
        timeout: Duration::from_millis(300),
        down_for: Duration::from_secs(1),
        on_unreachable: Default::default(),
        expected_replicas: None,
        lock_timeout: Duration::from_secs(10),
    });
    let server = TestServer::start_in(config, dir.path()).await;
    server.keep_dir(dir)
}

#[tokio::test]
async fn without_redis_calls_fail_closed_and_recover() {
    let mut redis = Redis::start();
    let port = redis.port;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_in(replica_config(&sim, dir.path(), port, 100), dir.path()).await;
    let lookup = |number: &str| pb::LookupNumberRequest {
        number: number.to_owned(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let ok = report(&server, lookup("13800138001")).await;
    assert!(outcome(&ok, pb::Check::LineStatus).billable);

    redis.stop();
    let failed = report(&server, lookup("13800138002")).await;
    let o = outcome(&failed, pb::Check::LineStatus);
    assert_eq!(o.state, pb::CheckState::Error as i32);
    assert!(!o.billable);
    let error = o.error.as_ref().unwrap();
    assert!(error.message.contains("shared quota"), "{error:?}");
    // Operators see it: the failed Redis commands are counted by what they were for.
    let metrics = phonecheck::metrics::install().unwrap().render();
    assert!(
        metrics.contains("phonecheck_shared_state_errors_total{operation=\"quota\"}"),
        "{metrics}"
    );
    assert_eq!(
        sim.stats().vendor("thinksms").calls,
        1,
        "no vendor call without the quota"
    );

    let _redis = Redis::start_on(port);
    // The connection comes back by itself; bounded retries while it reconnects.
    let mut recovered = false;
    for i in 0..150 {
        let r = report(&server, lookup(&format!("1380013{i:04}"))).await;
        if outcome(&r, pb::Check::LineStatus).state == pb::CheckState::Ok as i32 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "calls succeed again once Redis is back");
}

#[tokio::test]
async fn a_number_paid_on_one_replica_is_a_cache_hit_on_the_other() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let a = vendors_replica(&sim, redis.port).await;
    let b = vendors_replica(&sim, redis.port).await;
    let checks = [pb::Check::LineStatus, pb::Check::RiskProfile];

    let first = report(&a, lookup("13800138021", &checks)).await;
    for check in checks {
        let o = outcome(&first, check);
        assert_eq!(o.state(), pb::CheckState::Ok, "{o:?}");
        assert!(o.billable && !o.cached);
    }
    let second = report(&b, lookup("+86 138 0013 8021", &checks)).await;
    for check in checks {
        let o = outcome(&second, check);
        assert_eq!(o.state(), pb::CheckState::Ok, "{o:?}");
        assert!(o.cached && !o.billable, "a hit on the other replica: {o:?}");
        assert_eq!(o.fetched_at, outcome(&first, check).fetched_at);
    }
    assert_eq!(second.line_status, first.line_status);
    assert_eq!(second.risk_profile, first.risk_profile);
    let stats = sim.stats().snapshot();
    assert_eq!((stats["thinksms"].calls, stats["yidun"].calls), (1, 1));

    // Keys are keyed hashes: the number is nowhere in Redis's key space.
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let mut connection = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut connection).unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with("phonecheck:answer:")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("13800138021")), "{keys:?}");
}

#[tokio::test]
async fn a_number_asked_of_both_replicas_at_once_is_paid_once() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let a = vendors_replica(&sim, redis.port).await;
    let b = vendors_replica(&sim, redis.port).await;
    let ask = |server: &TestServer| {
        let mut client = server.client();
        async move {
            client
                .lookup_number(lookup("13800138022", &[pb::Check::LineStatus]))
                .await
                .unwrap()
                .into_inner()
                .report
                .unwrap()
        }
    };

    // A's call is held at the vendor while B asks for the same number.
    sim.stats().hold(true);
    let on_a = tokio::spawn(ask(&a));
    sim.stats().wait_for_held(|held| held == 1).await;
    // B waits for A's call: it looks at A's lock (EXISTS) while it waits, and only a waiting
    // replica does.
    let exists = redis.monitor("exists");
    let on_b = tokio::spawn(ask(&b));
    let waiting = tokio::task::spawn_blocking(exists).await.unwrap();
    assert!(waiting, "replica B waits for A's call");
    assert_eq!(sim.stats().held(), 1, "B made no call of its own");
    sim.stats().hold(false);

    let (on_a, on_b) = (on_a.await.unwrap(), on_b.await.unwrap());
    let (oa, ob) = (
        outcome(&on_a, pb::Check::LineStatus),
        outcome(&on_b, pb::Check::LineStatus),
    );
    assert_eq!(
        (oa.state(), ob.state()),
        (pb::CheckState::Ok, pb::CheckState::Ok)
    );
    assert!(oa.billable, "{oa:?}");
    assert!(!ob.billable && !ob.cached, "B joined A's call: {ob:?}");
    assert_eq!(on_a.line_status, on_b.line_status);
    let stats = sim.stats().vendor("thinksms");
    assert_eq!((stats.calls, stats.billable), (1, 1));
}

#[tokio::test]
async fn any_replica_collects_labels_another_submitted() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig {
        async_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let a = vendors_replica(&sim, redis.port).await;
    let b = vendors_replica(&sim, redis.port).await;

    let submitted = report(&a, lookup("13800000012", &[pb::Check::SpamLabels])).await;
    let o = outcome(&submitted, pb::Check::SpamLabels);
    assert_eq!(o.state(), pb::CheckState::Pending);
    assert!(o.billable);
    // Asked on B while pending: B knows it was submitted and does not submit it again.
    let still = report(&b, lookup("13800000012", &[pb::Check::SpamLabels])).await;
    assert_eq!(
        outcome(&still, pb::Check::SpamLabels).state(),
        pb::CheckState::Pending
    );
    sim.stats().wait_until(|s| s["caih"].ready >= 1).await;

    let collected = report(&b, lookup("13800000012", &[pb::Check::SpamLabels])).await;
    let o = outcome(&collected, pb::Check::SpamLabels);
    assert_eq!(o.state(), pb::CheckState::Ok, "{o:?}");
    assert!(!o.billable, "collecting is free");
    assert!(!collected.spam_labels.unwrap().labels.is_empty());
    assert_eq!(
        sim.stats().vendor("caih").billable,
        1,
        "one submission in all"
    );
}

#[tokio::test]
async fn a_job_of_numbers_another_replica_paid_for_is_not_paced() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let a = vendors_replica(&sim, redis.port).await;
    // Jobs on B may use 1% of Thinksms's 100/s: one number a second for numbers that cost a call.
    let b = vendors_replica_with(&sim, redis.port, |c| c.jobs.quota_share = 0.01).await;

    let (_, paid) = check_numbers(&a, items(7, 200)).await;
    assert_eq!(paid.billable_calls, 200);
    let list: String = items(7, 200)
        .iter()
        .map(|i| format!("{}\n", i.number))
        .collect();
    let mut jobs = jobs_client(&b);
    let spec = pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let job = create_job(&mut jobs, spec, list.as_bytes(), 4096)
        .await
        .unwrap();
    // At one a second this would take 200 s (past finished_job's limit): answers another replica
    // paid for are taken from Redis without waiting for quota.
    let done = finished_job(&mut jobs, &job.id).await;
    let p = done.progress.unwrap();
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32);
    assert_eq!(
        (p.numbers_done, p.billable_calls, p.cache_hits),
        (200, 0, 200)
    );
    assert_eq!(sim.stats().vendor("thinksms").billable, 200);
}

/// A caller dropped while it agrees with the other replicas who calls (its `SET NX` held up by
/// Redis) does not wedge its number: the next caller gets the answer of the one vendor call.
#[tokio::test]
async fn a_caller_dropped_while_coordinating_does_not_wedge_its_number() {
    use std::io::{BufRead, Write};
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        replica_config(&sim, dir.path(), redis.port, 100),
        dir.path(),
    )
    .await;
    let lookup = pb::LookupNumberRequest {
        number: "13800138077".to_owned(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    // Writes (the lock's SET NX) wait 250 ms, within the replica's 300 ms Redis timeout.
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    admin.write_all(b"CLIENT PAUSE 250 WRITE\r\n").unwrap();
    let mut reply = String::new();
    std::io::BufReader::new(&admin)
        .read_line(&mut reply)
        .unwrap();
    assert_eq!(reply.trim(), "+OK");

    let mut first = tonic::Request::new(lookup.clone());
    first.set_timeout(Duration::from_millis(80));
    let dropped = server.client().lookup_number(first).await.unwrap_err();
    // tonic's client gives up with CANCELLED ("Timeout expired") and resets the stream.
    assert!(
        matches!(
            dropped.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{dropped:?}"
    );

    let next = tokio::time::timeout(
        Duration::from_secs(10),
        server.client().lookup_number(lookup),
    )
    .await
    .expect("the next caller is answered, not left waiting on the dropped one")
    .unwrap()
    .into_inner()
    .report
    .unwrap();
    let o = outcome(&next, pb::Check::LineStatus);
    assert_eq!(o.state, pb::CheckState::Ok as i32, "{o:?}");
    assert_eq!(sim.stats().vendor("thinksms").calls, 1, "one vendor call");
}

/// Forgetting a number on one replica (right to erasure) removes it from Redis and from every
/// replica's own memory and answer store: the next lookup anywhere is paid again.
#[tokio::test]
async fn a_number_forgotten_on_one_replica_is_forgotten_by_all() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let a = vendors_replica(&sim, redis.port).await;
    let b = vendors_replica(&sim, redis.port).await;
    let checks = [pb::Check::LineStatus, pb::Check::RiskProfile];
    let number = "13800138031";
    report(&a, lookup(number, &checks)).await;
    // B takes both answers from Redis into its memory and its store.
    let on_b = report(&b, lookup(number, &checks)).await;
    assert!(outcome(&on_b, pb::Check::LineStatus).cached);
    let stored = |server: &TestServer| {
        let mut client = server.client();
        async move {
            client
                .list_providers(pb::ListProvidersRequest {})
                .await
                .unwrap()
                .into_inner()
                .answer_cache
                .unwrap()
        }
    };
    assert_eq!(stored(&b).await.stored_answers, 2);

    let forgotten = pb::admin_service_client::AdminServiceClient::new(a.channel())
        .forget_number(pb::ForgetNumberRequest {
            number: format!("+86{number}"),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .answers_forgotten;
    assert_eq!(forgotten, 2);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let mut connection = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("phonecheck:answer*")
        .query(&mut connection)
        .unwrap();
    assert!(keys.is_empty(), "nothing left in Redis: {keys:?}");
    // B hears of it through Redis; bounded wait for the broadcast to be applied.
    let mut gone = false;
    for _ in 0..100 {
        let info = stored(&b).await;
        if info.stored_answers == 0 && info.hot_answers == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "B forgot its copies");
    let again = report(&b, lookup(number, &checks)).await;
    for check in checks {
        let o = outcome(&again, check);
        assert!(o.billable && !o.cached, "paid again: {o:?}");
    }
    let stats = sim.stats().snapshot();
    assert_eq!((stats["thinksms"].calls, stats["yidun"].calls), (2, 2));
}
