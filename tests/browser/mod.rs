//! A real headless Chromium for end-to-end tests: Debian's `chromium` driven through Debian's
//! `chromedriver` over WebDriver (fantoccini, rustls). Each [`Browser`] has its own
//! chromedriver process and a fresh profile directory; both go away when it is dropped.
//!
//! A machine without them fails the test with the command that installs them (`.ci/run` does).
#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: the console's browser tests need Chromium and chromedriver. \
         Install them with `apt-get install -y chromium chromium-driver` (Debian; .ci/run does), \
         or point {env} at the binary.",
        path.display()
    );
    path
}

/// A headless Chromium session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = tool("CHROMIUM", CHROMIUM);
        let chromedriver = tool("CHROMEDRIVER", CHROMEDRIVER);
        let port = free_port();
        let log = std::env::temp_dir().join(format!("alertd-chromedriver-{port}.log"));
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let profile = tempfile::tempdir().expect("a profile directory");
        let url = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        // chromedriver needs a moment to listen; a loaded machine needs more.
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            match ClientBuilder::rustls()
                .expect("rustls client")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "no Chromium session from {} after 60 s: {e}\n{}",
                        chromedriver.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        Browser {
            client,
            driver,
            _profile: profile,
            shots,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .path()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// Finds `css` on the current page, or panics with the page.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("{css} not found ({e}) on\n{}", self.source().await),
        }
    }

    /// Elements matching `css` (none is fine).
    pub async fn find_all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    /// The text of `css`, or `None` when absent.
    pub async fn text(&self, css: &str) -> Option<String> {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.ok(),
            Err(_) => None,
        }
    }

    /// Loads `url` until `css` matches and `check` holds for the page source, or panics
    /// after `timeout` with the last page.
    pub async fn reload_until(
        &self,
        url: &str,
        css: &str,
        timeout: Duration,
        what: &str,
    ) -> fantoccini::elements::Element {
        let deadline = Instant::now() + timeout;
        loop {
            self.goto(url).await;
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: {css} never appeared on {url}:\n{}",
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stays on the current page until `css` matches (the page refreshes itself), or panics
    /// after `timeout` with the last page.
    pub async fn wait_on_page(
        &self,
        css: &str,
        timeout: Duration,
        what: &str,
    ) -> fantoccini::elements::Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!("{what}: {css} never appeared:\n{}", self.source().await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the browser is at `path` (after a click that navigates), or panics.
    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected to be at {path}, still at {now}:\n{}",
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Saves a screenshot as `target/console-screenshots/<name>.png` for a reviewer.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Whether the page is wider than the viewport (it would scroll sideways), with the two
    /// widths for the message.
    pub async fn overflow(&self) -> (bool, serde_json::Value) {
        let v = self
            .eval(
                "return {inner: window.innerWidth, \
                 client: document.documentElement.clientWidth, \
                 scroll: document.documentElement.scrollWidth, \
                 body: document.body.scrollWidth};",
            )
            .await;
        let client = v["client"].as_i64().unwrap_or(0);
        let wide =
            v["scroll"].as_i64().unwrap_or(0) > client || v["body"].as_i64().unwrap_or(0) > client;
        (wide, v)
    }

    /// Ends the browser session; the driver stops when the value is dropped.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port()
}
