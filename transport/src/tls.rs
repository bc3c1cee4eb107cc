//! TLS client configuration shared by the transports (rustls with the *ring* provider).
//!
//! [`client_config`] builds a [`rustls::ClientConfig`] from what a connection says:
//! * trusted roots: the certificates of `ca` (PEM, one or more) and the platform's native roots
//!   (`rustls-native-certs`; unreadable native stores are skipped, `ca` alone may suffice);
//! * client authentication with `client_cert` (certificate chain PEM, PKCS#8 key PEM) when set;
//! * `validate = false` (the connection's `validateCertificates: false`): a verifier that accepts
//!   any server certificate and host name. This disables the authentication of the broker, which
//!   is what the user asked for; signatures of the handshake are still checked.
//!
//! Bad PEM fails with [`ErrorKind::Misconfigured`] naming what is wrong. [`classify`] turns a TLS
//! failure found in an error chain (unknown issuer, bad certificate, wrong host name, an alert
//! of the peer) into a `Misconfigured` message.

use crate::{ErrorKind, TransportError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

fn misconfigured(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The platform's trusted certificates, loaded once per process.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Parses the certificates of a PEM text; at least one is required.
fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| misconfigured(format!("The {what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(misconfigured(format!(
            "The {what} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')"
        )));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        misconfigured(format!(
            "The client key is not a valid PEM private key (PKCS#8 expected): {e}"
        ))
    })
}

/// Builds the TLS client configuration of a connection (see the module documentation).
pub fn client_config(
    ca: Option<&str>,
    client_cert: Option<(&str, &str)>,
    validate: bool,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| misconfigured(format!("TLS configuration: {e}")))?;
    // The CA is parsed even when certificates are not validated: bad PEM is a mistake anyway.
    let ca_certs = ca
        .filter(|c| !c.trim().is_empty())
        .map(|c| parse_certs(c, "trusted certificate (ca)"))
        .transpose()?;
    let builder = if validate {
        let mut roots = RootCertStore::empty();
        if let Some(certs) = ca_certs {
            for (i, cert) in certs.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    misconfigured(format!(
                        "Certificate {} of the trusted certificates (ca) is invalid: {e}",
                        i + 1
                    ))
                })?;
            }
        }
        roots.add_parsable_certificates(native_roots().iter().cloned());
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
    };
    let config = match client_cert {
        Some((cert, key)) => {
            let certs = parse_certs(cert, "client certificate")?;
            let key = parse_key(key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| misconfigured(format!("The client certificate or key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts every server certificate: used only when the user turned certificate validation off.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS failure in an error's chain of sources, if there is one.
pub fn find_tls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// Describes a TLS failure for the user.
pub fn describe(error: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let reason = match error {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the server certificate was issued by an unknown (untrusted) certificate authority; \
             add its CA certificate to the trusted certificates (ca) or turn \
             validateCertificates off"
                .to_string()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server certificate is not valid for the host name of the URI".to_string()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server certificate has expired".to_string()
        }
        E::InvalidCertificate(c) => format!("the server certificate is invalid: {c:?}"),
        E::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate".to_string()
        }
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::AccessDenied),
        ) => format!("the server rejected the client certificate ({a:?})"),
        other => other.to_string(),
    };
    format!("TLS handshake failed: {reason}")
}

/// A TLS failure found in the chain of `error`, as a `Misconfigured` error.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<TransportError> {
    find_tls_error(error).map(|tls| misconfigured(describe(tls)))
}

/// The broker ended a TLS connection while the protocol's opening handshake ran (after the TLS
/// handshake): `Misconfigured` with what probably happened.
///
/// With TLS 1.3 the client's handshake is complete before the server has checked the client
/// certificate, so the client sends its first protocol bytes at once. A broker that rejects the
/// certificate (or requires one) sends an alert and closes; when the client's bytes arrive after
/// that, the broker's socket answers with a reset, and the client's next write fails with
/// "connection reset" before it has read the alert. The failure then has no TLS error in it:
/// this names the likely reason.
pub fn closed_after_handshake(authority: &str, error: &std::io::Error) -> Option<TransportError> {
    use std::io::ErrorKind as Io;
    match error.kind() {
        Io::ConnectionReset | Io::BrokenPipe | Io::UnexpectedEof | Io::ConnectionAborted => {
            Some(misconfigured(format!(
                "{authority} closed the TLS connection at the start of the protocol handshake: \
                 the broker probably rejected the client certificate, or requires one ({error})"
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_misconfigured() {
        let e = client_config(Some("not a certificate"), None, true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(e.message.contains("ca"), "{}", e.message);
        let e = client_config(
            Some("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            None,
            true,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Misconfigured);
    }

    #[test]
    fn without_ca_uses_native_roots() {
        assert!(client_config(None, None, true).is_ok());
        assert!(client_config(None, None, false).is_ok());
    }

    #[test]
    fn tls_error_in_io_error_is_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = classify(&io).unwrap();
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(e.message.contains("unknown"), "{}", e.message);
        assert!(classify(&std::io::Error::other("plain")).is_none());
    }

    #[test]
    fn reset_after_handshake_names_the_client_certificate() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = closed_after_handshake("h:5671", &reset).unwrap();
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(e.message.contains("h:5671"), "{}", e.message);
        assert!(e.message.contains("client certificate"), "{}", e.message);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(closed_after_handshake("h:5671", &refused).is_none());
    }
}
