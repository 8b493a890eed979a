//! The transport conformance suite on the in-memory backend.

use std::sync::Arc;
use std::time::Duration;

use baton_transport::{InMemoryTransport, MemoryConfig, Transport};

baton_transport::transport_conformance_tests!(|| async {
    let config = MemoryConfig {
        nack_delay: Duration::from_millis(1),
        ..MemoryConfig::default()
    };
    (Arc::new(InMemoryTransport::new(config)) as Arc<dyn Transport>, ())
});
