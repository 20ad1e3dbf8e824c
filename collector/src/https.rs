//! HTTPS for the dashboard, the API and `/metrics` (`http.tls-cert`, `http.tls-key`): a
//! listener for [`crate::serve`] that hands a connection over once its TLS handshake is done.
//!
//! Handshakes run on tasks of their own, each for at most [`HANDSHAKE_TIMEOUT`]; the accept
//! loop never waits for one. At most [`HANDSHAKES`] are in progress at once, and at most
//! [`PER_SOURCE`] from one address: a new connection beyond either bound ends the oldest
//! handshake (of its address, or of all), so that sockets left idle cannot keep a client that
//! speaks out (issue #20, finding 4: 64 idle sockets held every handshake slot). A client that
//! completes its handshake takes milliseconds; an idle socket is the oldest soon enough.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Handshakes in progress at once, at most.
pub const HANDSHAKES: usize = 64;
/// Handshakes in progress from one address at once, at most.
pub const PER_SOURCE: usize = 8;
/// A client has this long to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The handshakes in progress, oldest first: which address, and how to end it.
#[derive(Default)]
struct Pending {
    next: u64,
    list: VecDeque<(u64, IpAddr, AbortHandle)>,
}

impl Pending {
    /// Makes room for one more handshake from `ip`: takes out the oldest of `ip`'s when it has
    /// [`PER_SOURCE`], else the oldest of all when there are [`HANDSHAKES`], and returns it to
    /// be ended (once the lock is released: ending it takes the lock).
    fn make_room(&mut self, ip: IpAddr) -> Option<AbortHandle> {
        let mine = self.list.iter().filter(|(_, from, _)| *from == ip).count();
        let oldest = if mine >= PER_SOURCE {
            self.list.iter().position(|(_, from, _)| *from == ip)
        } else if self.list.len() >= HANDSHAKES {
            Some(0)
        } else {
            None
        };
        let (_, from, task) = self.list.remove(oldest?)?;
        tracing::debug!(%from, "HTTPS handshake ended early: a newer connection needs room");
        Some(task)
    }

    fn remove(&mut self, id: u64) {
        self.list.retain(|(i, _, _)| *i != id);
    }
}

/// Removes its handshake from [`Pending`] however the task ends (done, failed, aborted).
struct Registered(Arc<Mutex<Pending>>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.1);
    }
}

/// The server configuration for HTTPS: the certificate and key of `files`, HTTP/1.1.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, crate::pki::PkiError> {
    let config = crate::pki::server_config(&files.cert, &files.key, None, false)?;
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections on a task of its own and yields them once they speak TLS.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: wait, as axum's own listener does.
                            tracing::warn!("HTTPS accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                // The event stream writes small lines one after another (see `start`).
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                // Registered before the task can run (and end), under the same lock.
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                let evicted = p.make_room(peer.ip());
                let id = p.next;
                p.next += 1;
                let registered = Registered(pending.clone(), id);
                let task = tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    let result = handshake.await;
                    drop(registered);
                    match result {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTPS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                });
                p.list.push_back((id, peer.ip(), task.abort_handle()));
                drop(p);
                if let Some(oldest) = evicted {
                    oldest.abort();
                }
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task is gone (the runtime is shutting down): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounds: PER_SOURCE handshakes from one address (a new one ends that address's
    /// oldest), HANDSHAKES in all (a new one ends the oldest of all).
    #[tokio::test]
    async fn a_new_handshake_ends_the_oldest_beyond_either_bound() {
        let mut p = Pending::default();
        let mut tasks = Vec::new();
        let mut add = |p: &mut Pending, ip: IpAddr| {
            let evicted = p.make_room(ip);
            let task = tokio::spawn(std::future::pending::<()>());
            p.list.push_back((p.next, ip, task.abort_handle()));
            p.next += 1;
            tasks.push(task);
            evicted.map(|t| t.id())
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_SOURCE {
            assert_eq!(add(&mut p, a), None);
        }
        let first = p.list[0].2.id();
        assert_eq!(add(&mut p, a), Some(first), "a's oldest makes room for a");
        assert_eq!(p.list.len(), PER_SOURCE);
        for i in 0..HANDSHAKES - PER_SOURCE {
            let other = IpAddr::from([10, 1, (i / 200) as u8, (i % 200) as u8]);
            assert_eq!(add(&mut p, other), None);
        }
        assert_eq!(p.list.len(), HANDSHAKES);
        let oldest = p.list[0].2.id();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(add(&mut p, b), Some(oldest), "the oldest of all makes room");
        assert_eq!(p.list.len(), HANDSHAKES);
        p.remove(p.list[3].0);
        assert_eq!(p.list.len(), HANDSHAKES - 1);
    }
}
