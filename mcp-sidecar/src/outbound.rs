//! The sidecar's one HTTP client for services it calls besides Kafka and
//! the apiserver (Prometheus for `cluster_metrics`, the Schema Registry):
//! hyper-util's client with rustls on ring, what the Kubernetes client
//! already compiles in, so that neither brings a second HTTP or TLS stack.
//! A CA file is read when the client is made (a bad file fails the config
//! load, not the first call); answers are read under a byte cap; failures
//! are one small enum each caller words in its own terms.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A pooled HTTP/1.1 client for http:// and https:// URLs.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// No connection, or no answer (the innermost cause, e.g. "Connection refused").
    NoAnswer(String),
    /// The answer's body was larger than the cap.
    TooLarge(usize),
    /// The answer's body broke off.
    BrokeOff(String),
}

impl HttpClient {
    /// `field` names the CA file's setting in errors (e.g.
    /// `metrics.prometheus.caFile`). Without a CA file an https:// server
    /// is checked against the system's roots (unreadable ones are skipped).
    pub fn new(
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        field: &str,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("{field} {}: {e}", path.display()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.map_err(|e| anyhow::anyhow!("{field} {}: {e}", path.display()))?;
                    roots.add(cert)?;
                }
                if roots.is_empty() {
                    anyhow::bail!("{field} {} holds no certificate", path.display());
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `request` and reads its answer's body, at most `max_bytes`.
    /// No timeout of its own: callers bound the whole exchange.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        max_bytes: usize,
    ) -> Result<(http::StatusCode, Bytes), HttpFailure> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| HttpFailure::NoAnswer(cause(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpFailure::TooLarge(max_bytes)
                } else {
                    HttpFailure::BrokeOff(e.to_string())
                }
            })?
            .to_bytes();
        Ok((status, body))
    }
}

/// The innermost cause of a client error ("Connection refused"...), which
/// is what a person needs; hyper's outer message is only "client error".
pub fn cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Reads a credential file (a mounted Secret) per use, so that a rotated
/// Secret is used at once. What fails names the setting and the file,
/// never its content.
pub async fn read_secret(field: &str, path: &Path) -> Result<String, String> {
    tokio::fs::read_to_string(path)
        .await
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {field} {}: {}", path.display(), e.kind()))
}
