//! A small W3C WebDriver client over `chromedriver` driving Debian's headless Chromium, for the
//! console's browser tests. No crate of its own: WebDriver is JSON over HTTP.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The port chromedriver announces on `stdout` once it listens (`ChromeDriver was started
/// successfully on port N.`); what it writes later is read and dropped, so that it never waits
/// on a full pipe.
fn listening_port(stdout: std::process::ChildStdout) -> Option<u16> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
        let (_, rest) = line.split_once("started successfully on port ")?;
        rest.trim_end_matches('.').parse().ok()
    })?;
    std::thread::spawn(move || lines.for_each(drop));
    Some(port)
}

/// Chromium and chromedriver, when installed; `None` (after saying why) when the tests may
/// skip (`PHONECHECK_REQUIRE_CHROMIUM` unset), a failure otherwise.
pub fn browsers() -> Option<(String, String)> {
    let found = |names: &[&str]| {
        names.iter().find_map(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| (*b).to_owned())
        })
    };
    let chromium = found(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = found(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            assert!(
                std::env::var_os("PHONECHECK_REQUIRE_CHROMIUM").is_none(),
                "chromium and chromium-driver are required here but not installed"
            );
            eprintln!("chromium or chromedriver not installed: the browser tests are skipped");
            None
        }
    }
}

/// A running chromedriver with one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile that fetches nothing
    /// from outside.
    pub async fn start(chromium: &str, chromedriver: &str) -> Browser {
        // chromedriver binds a free port itself and then says which: bind first, then serve.
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = driver.stdout.take().unwrap();
        let announced = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || listening_port(stdout)),
        )
        .await;
        let Ok(Ok(Some(port))) = announced else {
            let _ = driver.kill();
            panic!("chromedriver did not say its port within 20 s");
        };
        let profile = tempfile::tempdir().unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        let binary = which(chromium);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1366,768",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {"download.default_directory": profile.path().join("downloads").display().to_string()}
            }
        }}});
        let mut created: Value = http
            .post(format!("{driver_url}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        created.take();
        Browser {
            driver,
            http,
            base: format!("{driver_url}/session/{id}"),
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("webdriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The page's URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the element matching `css` (a path, for a file input).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Runs `script` (a function body) with `args`; its return value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1]` with its result.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until `script` (a function body) returns true, failing after `limit`.
    pub async fn wait_for(&self, what: &str, script: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.run(script, json!([])).await.as_bool() == Some(true) {
                return;
            }
            if Instant::now() > deadline {
                let page = self
                    .run(
                        "return document.body ? document.body.innerText : ''",
                        json!([]),
                    )
                    .await;
                panic!("waited {limit:?} for {what}; the page says: {page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resizes the window.
    pub async fn size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a screenshot of the page at 1366×768 and at 390×844 (a phone) as
    /// `DIR/NAME-desktop.png` and `DIR/NAME-phone.png`, then goes back to the desktop size.
    pub async fn screenshots(&self, dir: &Path, name: &str) {
        for (suffix, width, height) in [("desktop", 1366, 768), ("phone", 390, 844)] {
            self.size(width, height).await;
            let shot = self.call(reqwest::Method::GET, "/screenshot", None).await;
            let png = base64_decode(shot.as_str().unwrap());
            assert!(png.starts_with(b"\x89PNG"), "a PNG");
            std::fs::write(dir.join(format!("{name}-{suffix}.png")), png).unwrap();
        }
        self.size(1366, 768).await;
    }

    /// Ends the browser session.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The absolute path of the program `name` (chromedriver wants the binary's path).
fn which(name: &str) -> String {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map_or_else(|| name.to_owned(), |p| p.display().to_string())
}

/// Where the test run keeps the console's screenshots for review.
pub fn screenshot_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Standard base64 (what WebDriver screenshots are).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
