//! The server as a process of its own (`phonecheck serve`), for tests that kill, pause or limit
//! it, or measure its memory and CPU from /proc.

use std::io::Read;
use std::path::Path;

/// A `phonecheck serve` process; returns it with its address once it listens.
pub fn spawn_server(config: &Path) -> (std::process::Child, String) {
    spawn_server_with(config, &[])
}

/// Like `spawn_server`, with more environment variables.
pub fn spawn_server_with(config: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_phonecheck"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--config"]);
    spawned(command.arg(config).envs(env.iter().copied()))
}

/// Like `spawn_server`, with at most `nofile` open descriptors (`ulimit -n`).
pub fn spawn_server_with_nofile(config: &Path, nofile: u32) -> (std::process::Child, String) {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_phonecheck"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"]);
    spawned(command.arg(config))
}

fn spawned(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    use std::process::Stdio;
    if !command.get_envs().any(|(k, _)| k == "RUST_LOG") {
        command.env("RUST_LOG", "warn");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // `serve` prints the address it listens on once the socket is bound.
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("phonecheck listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, format!("http://{addr}"))
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User and system CPU time of process `pid`, seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let mut stat = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .unwrap()
        .read_to_string(&mut stat)
        .unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat(5), counted after the command's closing parenthesis.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `VmRSS` or `VmHWM` of process `pid`, MiB.
pub fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A loopback port held by a socket that never listens: connecting to it is refused at once, and
/// no other test (or simulator) can take the port while the returned socket lives.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}
