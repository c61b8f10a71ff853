//! Resolvers that keep a test's traffic on loopback and count lookups.
//! reqwest resolves once per new connection, so against a refused port every
//! attempt is one lookup: the count is the attempt count, and waiting for it
//! orders a test after an attempt without sleeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::watch;

#[derive(Debug)]
pub struct CountingDns {
    addr: SocketAddr,
    lookups: watch::Sender<usize>,
}

impl CountingDns {
    /// Resolves every name to `addr` (reqwest still connects to the URL's port).
    pub fn new(addr: SocketAddr) -> Arc<CountingDns> {
        Arc::new(CountingDns { addr, lookups: watch::Sender::new(0) })
    }

    pub fn lookups(&self) -> usize {
        *self.lookups.borrow()
    }

    /// Returns once `n` lookups have happened.
    pub async fn reached(&self, n: usize) {
        let mut lookups = self.lookups.subscribe();
        lookups.wait_for(|seen| *seen >= n).await.expect("the sender lives in self");
    }
}

impl Resolve for CountingDns {
    fn resolve(&self, _: Name) -> Resolving {
        self.lookups.send_modify(|n| *n += 1);
        let addrs: Addrs = Box::new(std::iter::once(self.addr));
        Box::pin(std::future::ready(Ok(addrs)))
    }
}

/// Fails every lookup without sending a packet, and counts them. The system
/// resolver here forwards to a real nameserver, so even `.invalid` would send
/// a query off this machine: this takes the same path through reqwest's
/// connector (a `dns error` connect failure) and keeps all traffic local.
#[derive(Debug, Default)]
pub struct NoDns(AtomicUsize);

impl NoDns {
    pub fn new() -> Arc<NoDns> {
        Arc::new(NoDns::default())
    }

    pub fn lookups(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Resolve for NoDns {
    fn resolve(&self, name: Name) -> Resolving {
        self.0.fetch_add(1, Ordering::SeqCst);
        let message = format!("{}: no such host", name.as_str());
        Box::pin(async move { Err(message.into()) })
    }
}
