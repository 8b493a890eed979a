//! A service whose methods are HTTP endpoints of an existing API, so an API-driven
//! microservice joins workflows without code.
//!
//! Each attempt POSTs `{"task_id", "attempt", "workflow_id", "workflow_name", "args"}` to the
//! method's URL. A 2xx response's JSON body is the result (an empty body is `null`). A status in
//! the method's `retryable_statuses` (by default 408, 429, 502, 503, 504) or a connection error
//! is a retryable failure; any other status is a service error, not retried, carrying the
//! response body (as JSON when it parses, as a string otherwise) so the workflow can match it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use baton_shared_schemas::{Failure, FailureKind, Payload};
use serde::{Deserialize, Serialize};

use crate::context::TaskContext;
use crate::retry::RetryPolicy;
use crate::service::{MethodOptions, ServiceHandler, ServiceOptions, TaskFuture, unknown_method};

/// How one method maps to an HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMethod {
    /// The endpoint, `http://host:port/path` or `https://…`.
    pub url: String,
    /// Execution timeout of one attempt, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts in total (1 = never retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds (doubling, ±25 % jitter).
    #[serde(default = "default_initial_delay_ms")]
    pub initial_delay_ms: u64,
    /// Longest delay between attempts, in milliseconds.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// HTTP statuses worth retrying.
    #[serde(default = "default_retryable_statuses")]
    pub retryable_statuses: Vec<u16>,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_initial_delay_ms() -> u64 {
    200
}
fn default_max_delay_ms() -> u64 {
    30_000
}
fn default_retryable_statuses() -> Vec<u16> {
    vec![408, 429, 502, 503, 504]
}

/// A bridged service: its name and its methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServiceConfig {
    /// Service name (what workflows call).
    pub name: String,
    /// Method name → endpoint.
    pub methods: BTreeMap<String, HttpMethod>,
    /// For `https://` endpoints: a PEM file of authorities to trust besides the public roots
    /// (a private CA). Empty: the public roots only.
    #[serde(default)]
    pub tls_ca_file: String,
    /// For `https://` endpoints that ask for a client certificate (mutual TLS): its PEM chain,
    /// with [`tls_key_file`](Self::tls_key_file).
    #[serde(default)]
    pub tls_cert_file: String,
    /// The client certificate's PEM private key.
    #[serde(default)]
    pub tls_key_file: String,
}

impl HttpServiceConfig {
    /// A service with these methods and the public roots only.
    pub fn new(name: impl Into<String>, methods: BTreeMap<String, HttpMethod>) -> Self {
        Self {
            name: name.into(),
            methods,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }

    /// The TLS client configuration of its `https://` endpoints: the public roots, the
    /// configured authorities and, if set, the client certificate. Every error names the
    /// setting and its file.
    fn tls(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let service = &self.name;
        let certificates = |setting: &str, path: &str| -> Result<Vec<CertificateDer<'static>>, String> {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{service}.{setting} {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{service}.{setting} {path} holds no PEM certificate"));
            }
            Ok(certs)
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !self.tls_ca_file.is_empty() {
            for cert in certificates("tls_ca_file", &self.tls_ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{service}.tls_ca_file {}: {e}", self.tls_ca_file))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{service}: TLS: {e}"))?
            .with_root_certificates(roots);
        match (self.tls_cert_file.is_empty(), self.tls_key_file.is_empty()) {
            (true, true) => Ok(builder.with_no_client_auth()),
            (false, false) => {
                let chain = certificates("tls_cert_file", &self.tls_cert_file)?;
                let key = PrivateKeyDer::from_pem_file(&self.tls_key_file)
                    .map_err(|e| format!("{service}.tls_key_file {}: {e}", self.tls_key_file))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{service}.tls_cert_file and tls_key_file: {e}"))
            }
            _ => Err(format!(
                "{service}: tls_cert_file and tls_key_file go together (a client certificate needs its key)"
            )),
        }
    }
}

/// A service bridged to HTTP endpoints.
pub struct HttpService {
    name: &'static str,
    method_names: &'static [&'static str],
    methods: Arc<BTreeMap<String, HttpMethod>>,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Request<'a> {
    task_id: String,
    attempt: u32,
    workflow_id: String,
    workflow_name: &'a str,
    args: serde_json::Value,
}

impl HttpService {
    /// Builds the service from its configuration. Names live for the whole process (a worker
    /// hosts its services until it exits).
    pub fn new(config: HttpServiceConfig) -> Result<Self, String> {
        if config.methods.is_empty() {
            return Err(format!("bridged service {} has no methods", config.name));
        }
        for (method, m) in &config.methods {
            if !m.url.starts_with("http://") && !m.url.starts_with("https://") {
                return Err(format!(
                    "{}.{method}: url `{}` must start with http:// or https://",
                    config.name, m.url
                ));
            }
            if m.max_attempts == 0 || m.timeout_ms == 0 {
                return Err(format!(
                    "{}.{method}: max_attempts and timeout_ms must be at least 1",
                    config.name
                ));
            }
        }
        let name: &'static str = Box::leak(config.name.clone().into_boxed_str());
        let names: Vec<&'static str> = config
            .methods
            .keys()
            .map(|m| &*Box::leak(m.clone().into_boxed_str()))
            .collect();
        let uses_tls =
            !(config.tls_ca_file.is_empty() && config.tls_cert_file.is_empty() && config.tls_key_file.is_empty());
        if uses_tls && !config.methods.values().any(|m| m.url.starts_with("https://")) {
            return Err(format!(
                "{}: tls_ca_file, tls_cert_file and tls_key_file apply to https:// URLs, and no method has one",
                config.name
            ));
        }
        // reqwest's TLS (for https:// endpoints) runs on rustls with the ring provider, installed
        // for the process unless something installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config.tls()?)
            .build()
            .map_err(|e| format!("{}: HTTP client: {e}", config.name))?;
        Ok(Self {
            name,
            method_names: Box::leak(names.into_boxed_slice()),
            methods: Arc::new(config.methods),
            client,
        })
    }

    /// The timeouts and retry policies of its methods.
    pub fn options(&self) -> ServiceOptions {
        let mut options = ServiceOptions::default();
        for (name, m) in self.methods.iter() {
            let retry = RetryPolicy {
                max_attempts: m.max_attempts,
                initial_delay: Duration::from_millis(m.initial_delay_ms),
                max_delay: Duration::from_millis(m.max_delay_ms),
                ..RetryPolicy::default()
            };
            options = options.method(
                name,
                MethodOptions {
                    timeout: Duration::from_millis(m.timeout_ms),
                    retry,
                },
            );
        }
        options
    }
}

fn retryable(kind: FailureKind, message: String) -> Failure {
    Failure {
        retryable: true,
        ..Failure::new(kind, message)
    }
}

impl ServiceHandler for HttpService {
    fn name(&self) -> &'static str {
        self.name
    }

    fn methods(&self) -> &'static [&'static str] {
        self.method_names
    }

    fn call(&self, method: &str, args: Payload) -> TaskFuture {
        let Some(endpoint) = self.methods.get(method).cloned() else {
            let failure = unknown_method(self.name, method);
            return Box::pin(async move { Err(failure) });
        };
        let (client, service, method) = (self.client.clone(), self.name, method.to_string());
        Box::pin(async move {
            let ctx = TaskContext::current();
            let args: serde_json::Value = args.decode().map_err(|e| {
                Failure::new(
                    FailureKind::InvalidArguments,
                    format!("arguments of {service}.{method}: {e}"),
                )
            })?;
            let body = Request {
                task_id: ctx.task_id.to_string(),
                attempt: ctx.attempt,
                workflow_id: ctx.workflow_id.to_string(),
                workflow_name: &ctx.workflow_name,
                args,
            };
            let response = client
                .post(&endpoint.url)
                .header("Idempotency-Key", ctx.task_id.to_string())
                .json(&body)
                .send()
                .await
                .map_err(|e| retryable(FailureKind::ServiceError, format!("{service}.{method}: {e}")))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| {
                retryable(
                    FailureKind::ServiceError,
                    format!("{service}.{method}: reading the response: {e}"),
                )
            })?;
            if status.is_success() {
                if bytes.is_empty() {
                    return Ok(Payload::null());
                }
                return serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map_err(|e| {
                        Failure::new(
                            FailureKind::Serialization,
                            format!("{service}.{method}: the response is not JSON: {e}"),
                        )
                    })
                    .and_then(|v| {
                        Payload::json(&v).map_err(|e| Failure::new(FailureKind::Serialization, e.to_string()))
                    });
            }
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Err(Failure {
                kind: FailureKind::ServiceError,
                message: format!("{service}.{method}: HTTP {status}"),
                error: Payload::json(&detail).ok(),
                retryable: endpoint.retryable_statuses.contains(&status.as_u16()),
                previous_attempts: Vec::new(),
            })
        })
    }
}
