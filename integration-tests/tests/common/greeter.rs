//! A service that greets, for tests that need any service at all.

#[baton::service]
pub trait Greeter {
    /// `hello {name}`.
    async fn greet(&self, name: String) -> Result<String, String>;
}

/// Greets everyone.
pub struct GreeterImpl;

impl Greeter for GreeterImpl {
    async fn greet(&self, name: String) -> Result<String, String> {
        Ok(format!("hello {name}"))
    }
}
