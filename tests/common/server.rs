//! A `quipu serve` started in-process on ephemeral ports, for the server's black-box tests.

use std::time::Duration;

use quipu::server::{Server, ServerConfig};

/// A running server on its own runtime and data directory; shut down when dropped.
pub struct Running {
    /// The runtime serving it.
    pub rt: tokio::runtime::Runtime,
    /// The server (taken on drop).
    pub server: Option<Server>,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// The RESP port.
    pub port: u16,
}

impl Running {
    /// Starts a server with `config` (its data dir and port are replaced).
    pub fn start(config: ServerConfig) -> Self {
        let dir = super::tempdir();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            port: 0,
            http_port: 0,
            ..config
        };
        let server = rt.block_on(Server::start(config)).unwrap();
        let port = server.local_addr().port();
        Self {
            rt,
            server: Some(server),
            dir,
            port,
        }
    }

    /// A new client connection.
    pub fn con(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = self.rt.block_on(s.shutdown());
        }
    }
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Running {
    /// A connection that has not authenticated (for servers with a password).
    pub fn con_unauthenticated(&self) -> redis::Connection {
        self.con()
    }
}
