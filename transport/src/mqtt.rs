//! Not built yet: `connect` fails with a clear error until this transport lands.

use crate::{BoxFuture, ClientConfig, Connected, ErrorKind, TransportError};

pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    Box::pin(async move {
        Err(TransportError::new(
            ErrorKind::Misconfigured,
            format!("{:?} connections are not supported yet", config.protocol),
        ))
    })
}
