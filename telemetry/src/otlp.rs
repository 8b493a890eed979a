//! Exporting spans over OTLP/HTTP (protobuf) to a collector, Jaeger or any OTLP receiver.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The exporter refused its settings.
    #[error("cannot export traces to {endpoint}: {reason}")]
    Exporter {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// Keeps the exporter running; dropping it sends what is buffered and stops tracing.
pub struct OtlpGuard {
    provider: SdkTracerProvider,
}

impl OtlpGuard {
    /// Sends every finished span now.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        crate::trace::set_enabled(false);
        let _ = self.provider.shutdown();
    }
}

/// Exports this process's spans to `endpoint` (`http://collector:4318`; spans go to
/// `/v1/traces`) as `service`, keeping `sample_ratio` of the traces (a trace is kept or
/// dropped whole: children follow their parent's decision).
pub fn install(service: &str, endpoint: &str, sample_ratio: f64) -> Result<OtlpGuard, OtlpError> {
    // reqwest is built without a TLS provider of its own (Baton uses rustls with ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| OtlpError::Exporter {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio))))
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .with_attribute(KeyValue::new("service.namespace", "baton"))
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    crate::trace::set_enabled(true);
    Ok(OtlpGuard { provider })
}
