//! A real browser for the dashboard's tests: Debian's Chromium, headless,
//! driven over WebDriver by its own chromedriver (started here on a free
//! port, stopped on drop). `./dev test` installs both; nothing is downloaded.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A chromedriver process and a WebDriver session in a fresh profile.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280×900).
    pub async fn start() -> anyhow::Result<Browser> {
        let port = free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver (apt-get install chromium-driver; `./dev test` does)")?;
        let profile = tempfile::tempdir()?;
        // Dropped on any error below: the driver process goes with it.
        let browser = Browser { client: connect(port, &profile).await?, driver, _profile: profile };
        browser.client.set_window_size(1280, 900).await?;
        Ok(browser)
    }

    /// Ends the WebDriver session (the process stops on drop).
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.clone().close().await?;
        Ok(())
    }
}

async fn connect(port: u16, profile: &tempfile::TempDir) -> anyhow::Result<fantoccini::Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Polled until chromedriver listens (it takes a moment to start).
    loop {
        // Plain HTTP to the local driver: no TLS stack needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return Ok(c),
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(anyhow::anyhow!("no WebDriver session from chromedriver on {url}: {e}")),
        }
    }
}
