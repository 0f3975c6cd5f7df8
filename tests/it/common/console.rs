//! The web console's test fixtures: two tenants, a GBK CSV and an XLSX, and a small HTTP client
//! of the console that keeps its cookies and posts as a console page would.

use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::TestServer;

impl TestServer {
    /// Like `start`, with the web console on 127.0.0.1:0 too (bound here, so its address is
    /// known before the server serves).
    pub async fn with_console(mut config: Config) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        config.storage.data_dir = dir.path().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let console = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, console_addr) = (
            listener.local_addr().unwrap(),
            console.local_addr().unwrap(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(phonecheck::serve_with_listeners(
            listener,
            None,
            Some(console),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        TestServer {
            addr,
            console: Some(console_addr),
            stop: Some(stop),
            task,
            _dir: Some(dir),
        }
    }
}

pub const KEY_A: &str = "pck_console_tenant_a_key_for_tests_only";
pub const KEY_B: &str = "pck_console_tenant_b_key_for_tests_only";

/// Two tenants, the sandbox's vendors, and `more` (TOML).
pub fn config(more: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "5s"
        [console]
        listen = "127.0.0.1:0"
        {more}
        [tenants.acme]
        key_sha256 = ["{}"]
        [tenants.other]
        key_sha256 = ["{}"]
        "#,
        key_hash(KEY_A),
        key_hash(KEY_B),
    ))
    .unwrap()
}

/// A GBK-encoded CSV with a header: name, number, note, another number.
pub fn gbk_csv() -> Vec<u8> {
    let text = "姓名,手机号,备注,备用电话\n张三,13800000001,老客户,13600000001\n\
                李四,13800000002,空号？,13600000001\n王五,13900000002,,\n赵六,13700000004,风险,\n";
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

/// An XLSX with a sheet 客户: id, contact, phone.
pub fn xlsx() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("客户").unwrap();
    let rows = [
        ("编号", "联系人", "电话号码"),
        ("1001", "甲", "13800000001"),
        ("1002", "乙", "13600000002"),
        ("1003", "丙", "13500000003"),
    ];
    for (i, (a, b, c)) in rows.iter().enumerate() {
        let r = u32::try_from(i).unwrap();
        sheet.write_string(r, 0, *a).unwrap();
        sheet.write_string(r, 1, *b).unwrap();
        sheet.write_string(r, 2, *c).unwrap();
    }
    book.save_to_buffer().unwrap()
}

/// A client of the console that keeps its cookies and sends what a same-origin form would.
pub struct Web {
    pub base: String,
    http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

impl Web {
    pub fn new(server: &TestServer) -> Web {
        let base = format!("http://{}", server.console.unwrap());
        Web::over(base, http())
    }

    /// A client of the console at `base` (another scheme or host) built from `builder`.
    pub fn over(base: String, builder: reqwest::ClientBuilder) -> Web {
        Web {
            base,
            http: builder
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for set in headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(response.headers());
        response
    }

    /// A form post from a console page (same origin).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let origin = self.base.clone();
        self.post_from(path, form, Some(&origin), Some("same-origin"))
            .await
    }

    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
        site: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.unwrap();
        self.keep(response.headers());
        response
    }

    /// Uploads `file` as `name` the way the new-job page's script does.
    pub async fn upload(&mut self, name: &str, query: &str, file: Vec<u8>) -> reqwest::Response {
        let csrf = self.csrf().await;
        let url = format!("{}/jobs/upload?name={}&{query}", self.base, urlencode(name));
        self.http
            .post(url)
            .header("cookie", self.cookie_header())
            .header("origin", &self.base)
            .header("x-csrf-token", csrf)
            .body(file)
            .send()
            .await
            .unwrap()
    }

    /// The session's CSRF token, from a page's sign-out form.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/jobs").await.text().await.unwrap();
        hidden(&page, "csrf")
    }

    /// Signs in with `key`; the answer to the form.
    pub async fn sign_in(&mut self, key: &str) -> reqwest::Response {
        let page = self.get("/signin").await.text().await.unwrap();
        let token = hidden(&page, "csrf");
        self.post("/signin", &[("key", key), ("csrf", &token)])
            .await
    }
}

/// The id of the job an upload created (its error when it did not).
pub async fn created_job(response: reqwest::Response) -> String {
    let (status, body) = (response.status(), response.text().await.unwrap());
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    answer["id"].as_str().unwrap().to_owned()
}

/// A plain HTTP client (reqwest is built here without a default TLS provider).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the first hidden input `name` of a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}
