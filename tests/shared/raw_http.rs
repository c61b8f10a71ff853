//! Reading a request head off a raw TCP stream, for the test servers that
//! wiremock cannot play (resets, stalls, 100 MiB bodies). Shared by several
//! test binaries through `#[path]`.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads until the blank line that ends the request head; `false` when the
/// client hung up (or the read failed) first.
pub async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}
