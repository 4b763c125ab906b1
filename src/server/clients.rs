//! The connected clients, for `CLIENT LIST` and `CLIENT KILL`: each connection registers a
//! [`Client`] for its lifetime and watches its `kill` signal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// One connected client as others may see it.
#[derive(Debug)]
pub struct Client {
    /// `CLIENT ID`.
    pub id: u64,
    /// Peer address.
    pub addr: String,
    /// `CLIENT SETNAME`.
    pub name: Mutex<Option<String>>,
    /// The ACL user it authenticated as.
    pub user: Mutex<String>,
    /// 2 or 3.
    pub resp: AtomicU8,
    /// Milliseconds since the connection opened, at its last command.
    pub last_command_ms: AtomicU64,
    /// Subscriptions held (for `sub=` in `CLIENT LIST`).
    pub subscriptions: AtomicU64,
    opened: Instant,
    killed: AtomicBool,
    kill: Notify,
}

impl Client {
    /// Asks the connection to close after its current command.
    pub fn kill(&self) {
        self.killed.store(true, Relaxed);
        // `notify_one` keeps a permit when nobody waits yet, so no kill is missed.
        self.kill.notify_one();
    }

    /// Whether it was asked to close.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Relaxed)
    }

    /// Completes once [`Client::kill`] is called.
    pub async fn killed(&self) {
        self.kill.notified().await;
    }

    /// Records that a command ran now.
    pub fn touch(&self) {
        self.last_command_ms
            .store(self.opened.elapsed().as_millis() as u64, Relaxed);
    }

    /// The `CLIENT LIST` line.
    pub fn line(&self) -> String {
        let age = self.opened.elapsed();
        let idle = age.as_millis() as u64
            - self
                .last_command_ms
                .load(Relaxed)
                .min(age.as_millis() as u64);
        format!(
            "id={} addr={} name={} age={} idle={} db=0 sub={} user={} resp={}\n",
            self.id,
            self.addr,
            self.name.lock().as_deref().unwrap_or(""),
            age.as_secs(),
            idle / 1000,
            self.subscriptions.load(Relaxed),
            self.user.lock(),
            self.resp.load(Relaxed),
        )
    }
}

/// Every connected client, by id.
#[derive(Debug, Default)]
pub struct Clients {
    all: Mutex<BTreeMap<u64, Arc<Client>>>,
}

/// Removes its client from the registry when the connection ends.
#[derive(Debug)]
pub struct Registration<'a> {
    clients: &'a Clients,
    /// The client registered.
    pub client: Arc<Client>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.clients.all.lock().remove(&self.client.id);
    }
}

impl Clients {
    /// Registers a new connection.
    pub fn register(&self, id: u64, addr: String) -> Registration<'_> {
        let client = Arc::new(Client {
            id,
            addr,
            name: Mutex::new(None),
            user: Mutex::new("default".to_owned()),
            resp: AtomicU8::new(2),
            last_command_ms: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            opened: Instant::now(),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        self.all.lock().insert(id, Arc::clone(&client));
        Registration {
            clients: self,
            client,
        }
    }

    /// Every client, in id order.
    pub fn list(&self) -> Vec<Arc<Client>> {
        self.all.lock().values().cloned().collect()
    }

    /// The client with this id, if it is connected.
    pub fn get(&self, id: u64) -> Option<Arc<Client>> {
        self.all.lock().get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lasts_as_long_as_the_connection() {
        let clients = Clients::default();
        let a = clients.register(1, "127.0.0.1:1".into());
        {
            let _b = clients.register(2, "127.0.0.1:2".into());
            assert_eq!(clients.list().len(), 2);
        }
        let ids: Vec<u64> = clients.list().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![1]);
        *a.client.name.lock() = Some("worker".into());
        assert!(
            a.client
                .line()
                .starts_with("id=1 addr=127.0.0.1:1 name=worker ")
        );
        assert!(!a.client.is_killed());
        a.client.kill();
        assert!(a.client.is_killed());
    }

    #[tokio::test]
    async fn a_kill_before_anyone_waits_is_not_lost() {
        let clients = Clients::default();
        let a = clients.register(1, "x".into());
        a.client.kill();
        tokio::time::timeout(std::time::Duration::from_secs(5), a.client.killed())
            .await
            .unwrap();
    }
}
