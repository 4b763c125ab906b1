//! A `quipu serve` started in-process on ephemeral ports, for the server's black-box tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use quipu::server::{Server, ServerConfig};

/// A running server on its own runtime; shut down when dropped.
pub struct Running {
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    /// Its data directory, when the server owns a temporary one.
    _dir: Option<tempfile::TempDir>,
    /// The RESP port.
    pub port: u16,
}

impl Running {
    /// Starts a server with `config` on a fresh temporary data directory.
    pub fn start(config: ServerConfig) -> Self {
        let dir = super::tempdir();
        let mut running = Self::start_in(dir.path(), config);
        running._dir = Some(dir);
        running
    }

    /// Starts a server with `config` on `dir` (a restart test reopens the same one). The
    /// RESP and HTTP ports are ephemeral.
    pub fn start_in(dir: &Path, config: ServerConfig) -> Self {
        Self::start_on(dir, config, None)
    }

    /// As [`start_in`](Self::start_in), with the log's files behind `storage` (fault injection).
    pub fn start_with_storage(
        dir: &Path,
        config: ServerConfig,
        storage: std::sync::Arc<dyn quipu::Storage>,
    ) -> Self {
        Self::start_on(dir, config, Some(storage))
    }

    fn start_on(
        dir: &Path,
        config: ServerConfig,
        storage: Option<std::sync::Arc<dyn quipu::Storage>>,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = ServerConfig {
            data_dir: dir.to_owned(),
            port: 0,
            http_port: 0,
            ..config
        };
        let server = match storage {
            Some(storage) => rt.block_on(Server::start_with_storage(config, storage)),
            None => rt.block_on(Server::start(config)),
        }
        .unwrap();
        let port = server.local_addr().port();
        Self {
            rt,
            server: Some(server),
            _dir: None,
            port,
        }
    }

    /// A new client connection (not authenticated).
    pub fn con(&self) -> redis::Connection {
        let c = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// Sends raw bytes on a new connection and returns everything read until the server
    /// closes it or stays silent for 500 ms.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Shuts down gracefully, failing the test if shutting down fails.
    pub fn stop(mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown()).unwrap();
        }
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
