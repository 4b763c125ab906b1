//! `quipu serve` (the real binary, in its own process) accepts 10,000 simultaneous idle
//! connections and serves every one of them. How fast it stays under that load is measured
//! in scripts/bench-vs-redis.sh, not here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 10_000;

struct Served {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on an ephemeral port and reads the port from its "ready" line.
fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quipu"))
        .args([
            "serve",
            "--port",
            "0",
            "--no-http",
            "--max-clients",
            "10100",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("server exited before ready").unwrap();
        if let Some(addr) = line.split("RESP on ").nth(1) {
            break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
    };
    // Keep draining its stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served {
        child,
        port,
        _dir: dir,
    }
}

fn connected_clients(port: u16) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"INFO clients\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    let field = text
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap();
    // This connection counts too.
    field.trim().parse::<usize>().unwrap() - 1
}

#[test]
fn ten_thousand_idle_connections_are_accepted_and_served() {
    // The client side needs a descriptor per connection as well.
    let limit = rlimit::increase_nofile_limit(CONNECTIONS as u64 + 256).unwrap();
    assert!(
        limit >= CONNECTIONS as u64 + 256,
        "the hard open-files limit ({limit}) is too low for this test"
    );
    let served = serve();
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let s = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conns.push(s);
    }
    // Every connection is served: a PING on each gets its PONG.
    for s in &mut conns {
        s.write_all(b"PING\r\n").unwrap();
    }
    for s in &mut conns {
        let mut pong = [0u8; 7];
        s.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
    }
    assert_eq!(connected_clients(served.port), CONNECTIONS);
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected_clients(served.port) > 0 {
        assert!(
            Instant::now() < deadline,
            "closed connections were not released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
