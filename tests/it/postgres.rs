//! Jobs in a PostgreSQL database shared by replicas (a real PostgreSQL started by the test, on a
//! free loopback port): the job store's SQL on PostgreSQL, any replica answers for a job, and a job
//! survives the death of the replica running it — taken over once its lease lapses, with no number
//! lost and none paid twice. Without Redis, caih's pending submissions are shared there too. The
//! usage ledger of two replicas adds up in one table, and they hold a tenant's budget together.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use phonecheck::config::{Config, SecretRef};
use phonecheck::pb;
use phonecheck::sim::{self, SimConfig};
use sqlx::Connection;

/// A PostgreSQL server in a temporary directory, stopped on drop. As root it runs as the
/// `postgres` user (PostgreSQL refuses root).
pub(crate) struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: on the PATH, or Debian's.
fn postgres_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("pg_ctl").is_file());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|dir| dir.join("pg_ctl").is_file())
        .max();
    on_path
        .or(debian)
        .expect("PostgreSQL is installed (Debian package postgresql)")
}

impl Postgres {
    pub(crate) fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown for the postgres user");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            bin: postgres_bin(),
            dir,
            port,
            as_root,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "phonecheck",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
        );
        pg.start_again();
        pg
    }

    /// Starts the server on its data directory and port; `pg_ctl -w` returns once it accepts
    /// connections.
    pub(crate) fn start_again(&self) {
        let options = format!(
            // Without fsync (the tests never lose the machine), but a commit is written before
            // it is acknowledged, so that a server stopped at once keeps what it acknowledged.
            "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off",
            port = self.port,
            sock = self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server at once (`-m immediate`: connections are cut, no checkpoint).
    pub(crate) fn stop_now(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Sends `signal` (`STOP`, `CONT`) to the postmaster and every process it started, as a
    /// network partition looks to a client: connections stay open and nothing answers.
    pub(crate) fn signal_all(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(Path::new(&self.data()).join("postmaster.pid"))
            .expect("the server is running");
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the fields after the command name's closing bracket.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let ppid: Option<u32> = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(postmaster)
                && let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok())
            {
                pids.push(pid);
            }
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        assert!(self.try_run(program, args), "{program} {args:?}");
    }

    /// Runs one of PostgreSQL's programs (as the `postgres` user when root); whether it succeeded.
    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        let program = self.bin.join(program);
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A fresh database for one test; its URL.
    pub(crate) async fn database(&self, name: &str) -> String {
        let admin = format!("postgres://phonecheck@127.0.0.1:{}/postgres", self.port);
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        format!("postgres://phonecheck@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Whatever a test left it in (paused, stopped), and without a panic while unwinding.
        if Path::new(&self.data()).join("postmaster.pid").exists() {
            self.signal_all("CONT");
            let data = self.data();
            self.try_run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// The URL in a file, as a deployment mounts it.
pub(crate) fn url_file(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("database.url");
    std::fs::write(&path, url).unwrap();
    path
}

#[tokio::test]
async fn jobs_are_kept_in_postgres() {
    let pg = Postgres::start();
    let url = pg.database("jobs").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml("").unwrap();
    config.storage.database_url = Some(SecretRef::File(url_file(dir.path(), &url)));
    let server = TestServer::start_in(config, dir.path()).await;
    let mut client = jobs_client(&server);

    // 120 rows: 100 distinct numbers, 10 written again in another spelling, 10 without a number.
    let mut file = String::from("name,mobile\n");
    for i in 0..100 {
        file.push_str(&format!("c{i},1391234{i:04}\n"));
    }
    for i in 0..10 {
        file.push_str(&format!("again{i},+86 139 1234 {i:04}\n"));
    }
    for i in 0..10 {
        file.push_str(&format!("bad{i},n/a\n"));
    }
    let spec = pb::BatchJobSpec {
        file_name: "list.csv".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let created = create_job(&mut client, spec, file.as_bytes(), 500)
        .await
        .unwrap();
    let p = created.progress.unwrap();
    assert_eq!((p.rows_total, p.numbers_total, p.bad_rows), (120, 100, 10));
    let bad: Vec<i64> = created.bad_rows.iter().map(|b| b.row).collect();
    assert_eq!(
        bad,
        (112..122).collect::<Vec<_>>(),
        "row numbers count the header"
    );

    let job = finished_job(&mut client, &created.id).await;
    assert_eq!(job.state, pb::BatchJobState::Succeeded as i32);
    let p = job.progress.unwrap();
    assert_eq!(
        (p.numbers_done, p.rows_done, p.billable_calls),
        (100, 120, 100)
    );
    let counted: i64 = p.line_status_counts.iter().map(|c| c.count).sum();
    assert_eq!(counted, 110, "every row with a number has a status");

    let rows = csv_rows(
        &export_job(
            &mut client,
            &job.id,
            pb::ExportFormat::Csv,
            pb::LineStatus::Unspecified,
        )
        .await,
    );
    assert_eq!(rows.len(), 1 + 120, "every row, in order");
    assert_eq!(&rows[1][1..3], ["c0", "13912340000"]);
    let active = p
        .line_status_counts
        .iter()
        .find(|c| c.status == pb::LineStatus::Active as i32)
        .map_or(0, |c| c.count);
    let only_active = csv_rows(
        &export_job(
            &mut client,
            &job.id,
            pb::ExportFormat::Csv,
            pb::LineStatus::Active,
        )
        .await,
    );
    assert_eq!(only_active.len() as i64 - 1, active);
    let report = export_job(
        &mut client,
        &job.id,
        pb::ExportFormat::Html,
        pb::LineStatus::Unspecified,
    )
    .await;
    assert!(String::from_utf8(report).unwrap().contains("<svg"));

    // Paged listing, then deletion of the job with its rows and results.
    let listed = client
        .list_batch_jobs(pb::ListBatchJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    client
        .delete_batch_job(pb::DeleteBatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap();
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (left,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM batch_jobs) + (SELECT COUNT(*) FROM batch_job_rows)
             + (SELECT COUNT(*) FROM batch_job_numbers)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(left, 0, "nothing of the job remains");
}

/// A replica's configuration file: Thinksms at 50/s, jobs in the database at `url`, 3 s leases.
fn replica_toml(sim: &sim::SimServer, dir: &Path, url: &str) -> PathBuf {
    let more = format!(
        "database_url = {{ file = \"{}\" }}\n[jobs]\nlease = \"3s\"",
        url_file(dir, url).display()
    );
    let config = dir.join("phonecheck.toml");
    std::fs::write(&config, thinksms_toml(sim, dir, 50, &more)).unwrap();
    config
}

fn jobs_at(
    url: &str,
) -> pb::batch_job_service_client::BatchJobServiceClient<tonic::transport::Channel> {
    pb::batch_job_service_client::BatchJobServiceClient::new(
        tonic::transport::Channel::from_shared(url.to_owned())
            .unwrap()
            .connect_lazy(),
    )
}

#[tokio::test]
async fn a_job_survives_the_death_of_the_replica_running_it() {
    let pg = Postgres::start();
    let url = pg.database("replicas").await;
    let sim = start_sim(SimConfig::default()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, url_a) = spawn_server_with(
        &replica_toml(&sim, dir_a.path(), &url),
        &[("HOSTNAME", "replica-a")],
    );
    let (mut b, url_b) = spawn_server_with(
        &replica_toml(&sim, dir_b.path(), &url),
        &[("HOSTNAME", "replica-b")],
    );

    let mut text = String::from("phone\n");
    for i in 0..300 {
        text.push_str(&format!("1380000{i:04}\n"));
    }
    let spec = pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let job = create_job(&mut jobs_at(&url_a), spec, text.as_bytes(), 1000)
        .await
        .unwrap();
    sim.stats()
        .wait_until(|s| s["thinksms"].billable >= 50)
        .await;

    // Whichever replica took the job runs it alone; the other answers for it all the same.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (owner,): (String,) = sqlx::query_as("SELECT lease_owner FROM batch_jobs WHERE id = $1")
        .bind(&job.id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    let (runner, runner_url, other, other_url) = if owner.starts_with("replica-a/") {
        (&mut a, &url_a, &mut b, &url_b)
    } else {
        assert!(owner.starts_with("replica-b/"), "{owner}");
        (&mut b, &url_b, &mut a, &url_a)
    };
    let killed = owner.split('/').next().unwrap().to_owned();
    let seen = get_job(&mut jobs_at(other_url), &job.id).await;
    assert_eq!(seen.state, pb::BatchJobState::Running as i32);

    // Mid-job: hold the vendor's door, let the answers given be committed, then kill the runner.
    let answered = hold_vendor_once_committed(&sim, &mut jobs_at(runner_url), &job.id).await;
    runner.kill().unwrap();
    runner.wait().unwrap();
    sim.stats().wait_for_held(|held| held == 0).await;
    sim.stats().hold(false);
    assert!(
        answered < 300,
        "killed mid-job ({answered} of 300 answered)"
    );

    // The other replica takes the job over once the dead one's lease lapses, and finishes it.
    let done = finished_job(&mut jobs_at(other_url), &job.id).await;
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32);
    let p = done.progress.unwrap();
    assert_eq!(p.numbers_done, 300, "none lost");
    assert_eq!(p.billable_calls, 300);
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        300,
        "each number paid once across the replica's death"
    );
    let (owner,): (String,) = sqlx::query_as("SELECT lease_owner FROM batch_jobs WHERE id = $1")
        .bind(&job.id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(
        !owner.starts_with(&killed),
        "taken over by the other replica: {owner}"
    );
}

#[tokio::test]
async fn without_redis_replicas_share_caih_submissions_in_postgres() {
    let pg = Postgres::start();
    let url = pg.database("pending").await;
    let sim = start_sim(SimConfig {
        async_delay: std::time::Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let replica = |dir: &Path| {
        let mut config = vendors_config(&sim, dir, &Secrets::right(), "SM3");
        config.storage.database_url = Some(SecretRef::File(url_file(dir, &url)));
        config
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestServer::start_in(replica(dir_a.path()), dir_a.path()).await;
    let b = TestServer::start_in(replica(dir_b.path()), dir_b.path()).await;

    let submitted = report(&a, lookup("13800000012", &[pb::Check::SpamLabels])).await;
    let o = outcome(&submitted, pb::Check::SpamLabels);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Pending, true));
    assert_eq!(
        outcome(
            &report(&b, lookup("13800000012", &[pb::Check::SpamLabels])).await,
            pb::Check::SpamLabels
        )
        .state(),
        pb::CheckState::Pending,
        "B knows A submitted it"
    );
    sim.stats().wait_until(|s| s["caih"].ready >= 1).await;
    let collected = report(&b, lookup("13800000012", &[pb::Check::SpamLabels])).await;
    let o = outcome(&collected, pb::Check::SpamLabels);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Ok, false));
    assert_eq!(
        sim.stats().vendor("caih").billable,
        1,
        "one submission in all"
    );
}

#[tokio::test]
async fn two_replicas_on_one_postgres_hold_a_daily_budget_together() {
    const KEY: &str = "pck_postgres_budget_tenant_key_for_tests";
    let pg = Postgres::start();
    let url = pg.database("budgets").await;
    let sim = start_sim(SimConfig::default()).await;
    let replica = |dir: &Path| {
        let more = format!(
            "database_url = {{ file = \"{}\" }}\n\
             [tenants.acme]\nkey_sha256 = [\"{}\"]\ndaily_billable_budget = 25",
            url_file(dir, &url).display(),
            phonecheck::auth::key_hash(KEY)
        );
        Config::from_toml(&thinksms_toml(&sim, dir, 0, &more)).unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestServer::start_in(replica(dir_a.path()), dir_a.path()).await;
    let b = TestServer::start_in(replica(dir_b.path()), dir_b.path()).await;
    // 60 distinct numbers asked of both replicas at once, 30 each.
    let ask = |server: &TestServer, from: u32| {
        let mut client = server.client();
        async move {
            let mut answered = 0;
            for i in from..from + 30 {
                let request = lookup(&format!("1380013{i:04}"), &[pb::Check::LineStatus]);
                match client.lookup_number(bearer(request, KEY)).await {
                    Ok(_) => answered += 1,
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                    }
                }
            }
            answered
        }
    };
    let (from_a, from_b) = tokio::join!(ask(&a, 0), ask(&b, 100));
    assert_eq!(from_a + from_b, 25);
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        25,
        "the budget, no more"
    );
}

#[tokio::test]
async fn replicas_add_up_one_usage_ledger_in_postgres() {
    let pg = Postgres::start();
    let url = pg.database("usage").await;
    let sim = start_sim(SimConfig::default()).await;
    let replica = |dir: &Path| {
        let key = dir.join("thinksms.key");
        std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
        let mut config = thinksms_config(
            &sim.base_url(),
            phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
            &key,
        );
        if let Some(provider) = config.providers.get_mut("thinksms") {
            provider.shared.prices.set(
                phonecheck::domain::Check::LineStatus,
                "0.03".parse().unwrap(),
            );
        }
        config.storage.database_url = Some(SecretRef::File(url_file(dir, &url)));
        config
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestServer::start_in(replica(dir_a.path()), dir_a.path()).await;
    let b = TestServer::start_in(replica(dir_b.path()), dir_b.path()).await;
    for i in 0..5 {
        report(
            &a,
            lookup(&format!("1391111{i:04}"), &[pb::Check::LineStatus]),
        )
        .await;
    }
    // B pays for its own numbers and answers A's from its own (empty) cache by paying again.
    for i in 3..8 {
        report(
            &b,
            lookup(&format!("1391111{i:04}"), &[pb::Check::LineStatus]),
        )
        .await;
    }
    report(&b, lookup("13911110007", &[pb::Check::LineStatus])).await;
    // B writes what it counted at shutdown; A writes its own before it reads.
    b.stop().await.unwrap();
    let usage = pb::usage_service_client::UsageServiceClient::new(a.channel())
        .get_usage(pb::GetUsageRequest {
            // From three days ago: across a midnight or a month's end in China all the same.
            from_day: ((chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
                - chrono::Duration::days(3))
            .to_string(),
            group_by: pb::UsageGrouping::Month as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        usage
            .rows
            .iter()
            .all(|r| (r.tenant.as_str(), r.provider.as_str()) == ("anonymous", "thinksms")),
        "{usage:?}"
    );
    let row = usage.totals.clone().unwrap();
    assert_eq!(row.billable_calls, 10);
    assert_eq!(
        row.billable_calls,
        sim.stats().vendor("thinksms").billable as i64
    );
    assert_eq!(row.cache_hits, 1);
    let cost = row.cost.clone().unwrap();
    assert_eq!(
        (cost.units, cost.nanos, cost.currency_code.as_str()),
        (0, 300_000_000, "CNY")
    );
}

/// A re-check on PostgreSQL: one SQL text serves both databases, whose column types differ.
#[tokio::test]
async fn a_recheck_in_postgres_reports_exactly_the_changed_numbers() {
    let pg = Postgres::start();
    let url = pg.database("recheck").await;
    crate::recheck::the_world_moves_on(Some(&url)).await;
}
