//! A real `redis-server` for the tests of shared state and of Redis failing.

use std::time::Duration;

/// A `redis-server` on a free loopback port, stopped on drop.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start_on(port: u16) -> Redis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        // Owned at once, so that it is stopped on every path (Drop).
        let mut redis = Redis { child, port };
        // redis-server logs to standard output that it accepts connections once it listens.
        use std::io::BufRead;
        let mut log = std::io::BufReader::new(redis.child.stdout.take().unwrap()).lines();
        let ready = log
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server did not start on port {port}");
        // Whatever it logs later is read, so that it never blocks on a full pipe.
        std::thread::spawn(move || log.for_each(drop));
        redis
    }

    /// Opens `MONITOR`, then hands back a waiter that blocks until Redis runs `command` (at most
    /// 30 s): an event to wait for, seen from outside the replicas.
    pub fn monitor(&self, command: &str) -> impl FnOnce() -> bool + Send + 'static {
        use std::io::{BufRead, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut lines = std::io::BufReader::new(stream).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "+OK");
        let wanted = format!("\"{}\"", command.to_ascii_uppercase());
        move || {
            lines
                .map_while(Result::ok)
                .any(|line| line.contains(&wanted))
        }
    }

    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a paused Redis keeps its connections
    /// open and answers nothing.
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
