//! TLS to an external broker (`mqtts://`, SPEC §7): rustls with the ring
//! provider, trusting `mqtt.ca_file` (or the system's roots when it is
//! empty), with an optional client certificate. Files are read when the
//! config is, so a bad one is a config error naming its key.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong, and which config key it belongs to.
pub type TlsError = (&'static str, String);

/// The certificates in a PEM file; none is an error.
pub(crate) fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = CertificateDer::pem_file_iter(path)
        .map_err(|e| (key, format!("cannot read {}: {e}", path.display())))?;
    let certs = read
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (key, format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err((key, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// The client's rustls configuration.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates("mqtt.ca_file", path)? {
                roots.add(cert).map_err(|e| {
                    (
                        "mqtt.ca_file",
                        format!("{}: not a CA certificate: {e}", path.display()),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err((
                    "mqtt.ca_file",
                    "this system has no CA certificates (install ca-certificates), so no \
                     broker can be trusted; set mqtt.ca_file to the broker's CA"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("mqtt.url", format!("no TLS version to offer: {e}")))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates("mqtt.client_cert", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                (
                    "mqtt.client_key",
                    format!("{} holds no readable PEM private key: {e}", key.display()),
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                (
                    "mqtt.client_key",
                    format!("does not fit mqtt.client_cert: {e}"),
                )
            })?
        }
    };
    Ok(Arc::new(config))
}
