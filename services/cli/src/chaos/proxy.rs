//! A TCP proxy to Postgres that can be cut: what an outage is to its clients.
//! Cut, it drops every open connection and refuses new ones until restored.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

/// The proxy; it runs until the process ends.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> std::io::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, list) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                let mut list = list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                list.retain(|c| !c.is_finished());
                list.push(conn);
            }
        });
        Ok(Proxy { addr, up, conns })
    }

    /// A database URL like `url` but through this proxy.
    pub fn url_for(&self, url: &str) -> Result<String, url::ParseError> {
        let mut u = url::Url::parse(url)?;
        let _ = u.set_port(Some(self.addr.port()));
        Ok(u.to_string())
    }

    /// The outage begins: open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            c.abort();
        }
    }

    /// The outage ends.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
