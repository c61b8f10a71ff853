//! A resolver that answers every name with one address and counts lookups.
//! reqwest resolves once per new connection, so against a refused port every
//! attempt is one lookup: the count is the attempt count, and waiting for it
//! orders a test after an attempt without sleeping. Shared by several test
//! binaries through `#[path]`.

use std::net::SocketAddr;
use std::sync::Arc;

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
    #[allow(dead_code)] // Not every binary that counts also waits.
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
