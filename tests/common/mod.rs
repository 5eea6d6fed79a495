//! Test harness: the real `alertd` binary as a child process, and a real loopback webhook
//! receiver that records every request and answers from a script.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; the race is harmless on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("receiver got JSON")
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// Status with a `Retry-After` header (seconds).
    RetryAfter(u16, u64),
    /// Never answer (until the client gives up).
    Hang,
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<Received>,
    /// Per path prefix scripts; requests not matching any use `default`.
    scripts: Vec<(String, VecDeque<Answer>)>,
    default: Option<Answer>,
}

/// A loopback webhook receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// Starts a receiver that answers 200 unless scripted otherwise.
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    let path = uri.path().to_string();
                    let answer = {
                        let mut st = s.lock().unwrap();
                        st.requests.push(Received {
                            at: Instant::now(),
                            path: path.clone(),
                            headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        let scripted = st
                            .scripts
                            .iter_mut()
                            .find(|(p, q)| path.starts_with(p.as_str()) && !q.is_empty())
                            .and_then(|(_, q)| q.pop_front());
                        scripted.or_else(|| st.default.clone())
                    };
                    match answer.unwrap_or(Answer::Status(200)) {
                        Answer::Status(c) => {
                            (StatusCode::from_u16(c).unwrap(), "scripted").into_response()
                        }
                        Answer::RetryAfter(c, secs) => (
                            StatusCode::from_u16(c).unwrap(),
                            [("retry-after", secs.to_string())],
                            "slow down",
                        )
                            .into_response(),
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            StatusCode::OK.into_response()
                        }
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    /// The URL for `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers for requests whose path starts with `prefix`, in order; then the default.
    pub fn script(&self, prefix: &str, answers: Vec<Answer>) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .push((prefix.to_string(), answers.into()));
    }

    /// The answer once scripts are used up.
    pub fn set_default(&self, a: Answer) {
        self.state.lock().unwrap().default = Some(a);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits until at least `n` requests reached `prefix`, or panics after `timeout`.
    pub async fn wait_for(&self, prefix: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests_to(prefix);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} request(s) to {prefix}, got {}: {:?}",
                    got.len(),
                    got
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Config text with the server and storage set for a test; `rest` holds engine/delivery
/// sections and alerts.
pub fn config_text(port: u16, data: &Path, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"{}\"\n{rest}",
        data.join("alertd.redb").display()
    )
}

/// The real daemon, as a child process.
pub struct Daemon {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    starts: usize,
    extra_env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes `rest` (sections after [server]/[storage]) as the config in `dir` and starts.
    pub async fn start(dir: &Path, rest: &str) -> Daemon {
        Self::start_with_env(dir, rest, &[]).await
    }

    /// Like `start`, with extra environment variables for the child.
    pub async fn start_with_env(dir: &Path, rest: &str, env: &[(&str, &str)]) -> Daemon {
        let mut d = Self::prepare(dir, rest, env);
        d.spawn().await;
        d
    }

    /// Writes the config and picks the port like `start_with_env`, but starts nothing: call
    /// `launch` or `spawn` when the test is ready to watch.
    pub fn prepare(dir: &Path, rest: &str, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let config_path = dir.join("alertd.toml");
        std::fs::write(&config_path, config_text(port, dir, rest)).unwrap();
        Daemon {
            dir: dir.to_path_buf(),
            config_path,
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: None,
            starts: 0,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Path of the log of start number `n` (0-based).
    pub fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("alertd.{n}.log"))
    }

    /// All logs of every start, concatenated.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts the process and waits until `/healthz` answers.
    pub async fn spawn(&mut self) {
        self.launch();
        self.wait_ready(Duration::from_secs(20)).await;
    }

    /// Sets (or replaces) an environment variable for the next starts.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.retain(|(k, _)| k != key);
        self.extra_env.push((key.to_string(), value.to_string()));
    }

    /// Starts the process and returns at once, without waiting for it to be ready: for tests
    /// that watch start-up itself (readiness notifications, kills during recovery).
    pub fn launch(&mut self) {
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        self.starts += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_alertd"));
        cmd.arg("run")
            .arg("-c")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start alertd"));
    }

    /// True while the process started last is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Waits until `/healthz` answers; panics with the logs if the process exits or `timeout`
    /// passes first.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("alertd exited early ({status}):\n{}", self.logs());
            }
            if Instant::now() > deadline {
                panic!("alertd not ready after {timeout:?}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (e.g. "HUP").
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Rewrites the config file (same server/storage) with new `rest`.
    pub fn rewrite_config(&self, rest: &str) {
        let tmp = self.dir.join("alertd.toml.tmp");
        std::fs::write(&tmp, config_text(self.port, &self.dir, rest)).unwrap();
        std::fs::rename(tmp, &self.config_path).unwrap();
    }

    /// POSTs a body to /v1/events; returns status and JSON answer.
    pub async fn post_events(&self, body: &str, content_type: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/events", self.base))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("post events");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POSTs NDJSON lines made from JSON values and expects 202.
    pub async fn send(&self, events: &[serde_json::Value]) -> serde_json::Value {
        let body: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let (status, v) = self
            .post_events(&body.join("\n"), "application/x-ndjson")
            .await;
        assert_eq!(status, 202, "ingest answered {status}: {v}");
        v
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("get /metrics")
            .text()
            .await
            .expect("/metrics body")
    }

    /// GET a JSON API path.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("get");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The newest row of the delivered history, once there is one (within 10 s). Results are
    /// recorded in groups at most 100 ms apart, so a receiver can see a request before the
    /// history has its row.
    pub async fn newest_delivered(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = self.get("/v1/deliveries?status=delivered").await;
            if let Some(row) = v["deliveries"].as_array().and_then(|r| r.first().cloned()) {
                return row;
            }
            assert!(Instant::now() < deadline, "never recorded as delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST to a JSON API path with an optional JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = reqwest::Client::new().post(format!("{}{}", self.base, path));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("post");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A trace event with an error, for `project`.
pub fn error_trace(project: &str) -> serde_json::Value {
    serde_json::json!({"kind": "trace", "project": project, "error_info": {"message": "boom"}})
}
