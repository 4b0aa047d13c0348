//! Shared parts of the tests that stand up an HTTPS server for the binary to call
//! (`auth_custom_reauth.rs`, `auth_sat_tokenreview.rs`): hyper over tokio-rustls on an
//! ephemeral loopback port, with a server certificate from a fresh CA.

use std::future::Future;
use std::sync::Arc;

use edgeplane_broker::tls::{issue_ca, issue_leaf};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

/// A response with `status` and `body` as JSON.
pub fn json_reply(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// Serve `handler` over HTTPS/1.1 on an ephemeral loopback port, with a certificate for
/// 127.0.0.1 named `leaf_name` from a fresh CA named `ca_name`; returns the port and the
/// CA's PEM.
pub async fn serve_https<F, Fut>(ca_name: &str, leaf_name: &str, handler: F) -> (u16, String)
where
    F: Fn(hyper::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let ca = issue_ca(ca_name).expect("CA");
    let names = ["127.0.0.1".to_owned()];
    let leaf = issue_leaf(&ca, leaf_name, &names, false).expect("server certificate");
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), Arc::clone(&handler));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, hyper::Error>(answer.await) }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (port, ca.cert_pem)
}
