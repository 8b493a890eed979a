//! The storage conformance suite on the in-memory backend.

use baton_storage::InMemoryStore;

baton_storage::storage_conformance_tests!(|| async { (InMemoryStore::new(), ()) });
