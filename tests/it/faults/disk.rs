//! The data directory's disk filling up at a seeded moment under a running file job (SQLite: the
//! job's store, the answer store and the usage ledger are all on it), then freed. Invariants: the
//! job finishes with every number answered once, each number was paid for once and the job counts
//! what the vendor billed, and the server is alive. Needs a small file system the test can mount
//! (a tmpfs, as root); where it cannot, the test says so and passes without running. The seed is
//! printed (`PHONECHECK_FAULT_SEED` replays it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::SimConfig;

const NUMBERS: u32 = 400;
const QUOTA: u32 = 100;
const JOB_BOUND: Duration = Duration::from_secs(60);
/// The small file system's size.
const DISK_MIB: u32 = 64;

/// A tmpfs of `DISK_MIB` MiB mounted on a temporary directory; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK_MIB}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file in `dir` until the disk is full (at most the disk's size): the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..(DISK_MIB * 16 + 16) {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = file.flush();
    path
}

#[tokio::test]
async fn the_data_disk_full_under_a_job() {
    let Some(disk) = SmallDisk::mount() else {
        println!(
            "SKIPPED: cannot mount a {DISK_MIB} MiB tmpfs here (needs root and CAP_SYS_ADMIN); \
             the disk-full fault is not exercised"
        );
        return;
    };
    let seed = fault_seed();
    // The disk fills once this many numbers are paid for, and stays full this long.
    let at = 20 + seed % 160;
    let lasts = Duration::from_millis(500 + (seed / 1_200) % 1_500);
    println!("disk full after {at} numbers paid, for {lasts:?}");
    let sim = start_sim(SimConfig::default()).await;
    let config = Config::from_toml(&thinksms_toml(&sim, disk.path(), QUOTA, "")).unwrap();
    let server = TestServer::start_in(config, disk.path()).await;

    let created = super::job::start(&server, "86", NUMBERS).await;
    let started = Instant::now();
    super::job::paid(&sim, at).await;
    let filler = fill(disk.path());
    let before = sim.stats().vendor("thinksms").billable;
    tokio::time::sleep(lasts).await;
    std::fs::remove_file(&filler).unwrap();
    println!("disk full with {before} numbers paid");

    let job = super::job::ended(&server, &created.id, JOB_BOUND).await;
    let bill = sim.stats().vendor("thinksms").billable;
    println!("disk full: ended after {:?}", started.elapsed());
    super::job::assert_paid_once("disk full", &job, NUMBERS, bill);
    super::job::second_pass_pays_nothing(&server, "86", NUMBERS).await;
    let again = report(&server, lookup("13860001000", &[pb::Check::LineStatus])).await;
    assert!(!outcome(&again, pb::Check::LineStatus).billable);
    drop(server);
    drop(disk);
}
