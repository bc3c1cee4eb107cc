//! What the guards between a client library and its broker share (`amqp091::guard`,
//! `mqtt::wire`).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Passes the library's bytes on to the broker as they come, flushing each read (a TLS stream
/// sends only on flush), until the library's side ends or fails; then shuts the broker's side
/// down. An error is the broker's side failing.
pub(crate) async fn pass_on(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}
