//! Request bodies as streams (`reqwest::Body::wrap_stream`), without a futures dependency.

use std::pin::Pin;
use std::task::{Context, Poll};

/// A stream of `items`, each ready at once.
pub fn futures_stream<T: Send + Sync + Unpin + 'static>(
    items: Vec<T>,
) -> impl futures_core::Stream<Item = T> + Send + Sync + 'static {
    struct Iter<T>(std::vec::IntoIter<T>);
    impl<T: Unpin> futures_core::Stream for Iter<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

/// A channel receiver as a stream: the test decides when each item comes.
pub struct Receiver<T>(pub tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
