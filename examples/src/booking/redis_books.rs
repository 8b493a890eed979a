//! [`RedisBooks`]: the booking services' books in Redis, for the cluster programs
//! (`booking-worker`, `cluster-booking`; feature `cluster`). The embedded demo keeps its books in
//! memory and compiles no Redis client.

use std::collections::HashMap;

use super::{Bookkeeper, Books};

/// Books kept in Redis, shared by every worker process of a cluster, so they can be audited
/// after processes were killed.
#[derive(Clone)]
pub struct RedisBooks {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisBooks {
    /// Connects; keys start with `prefix` (use one prefix per run). Reconnects like Baton's
    /// own store does (short capped delays, bounded waits), so a Redis outage fails a booking
    /// step quickly and the step is retried, instead of parking it for a minute.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let config = baton_storage::RedisOptions::default().manager_config();
        let connection = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            connection,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn set_once(&self, hash: &str, field: &str, value: String) -> Result<(), String> {
        let mut con = self.connection.clone();
        redis::AsyncCommands::hset_nx::<_, _, _, ()>(&mut con, self.key(hash), field, value)
            .await
            .map_err(|e| e.to_string())
    }

    async fn all(&self, hash: &str) -> Result<HashMap<String, String>, String> {
        let mut con = self.connection.clone();
        redis::AsyncCommands::hgetall(&mut con, self.key(hash))
            .await
            .map_err(|e| e.to_string())
    }
}

fn number(text: &str) -> u64 {
    text.parse().unwrap_or(0)
}

#[async_trait::async_trait]
impl Bookkeeper for RedisBooks {
    async fn count(&self, method: &'static str, transient: bool) -> Result<(), String> {
        let mut con = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.hincr(self.key("executions"), method, 1).ignore();
        if transient {
            pipe.incr(self.key("transient"), 1).ignore();
        }
        pipe.query_async::<()>(&mut con).await.map_err(|e| e.to_string())
    }
    async fn charge(&self, key: &str, booking: u64, amount: u64) -> Result<(), String> {
        self.set_once("charges", key, format!("{booking}|{amount}")).await
    }
    async fn refund(&self, charge_id: &str, amount: u64) -> Result<(), String> {
        self.set_once("refunds", charge_id, amount.to_string()).await
    }
    async fn ticket(&self, key: &str, booking: u64) -> Result<(), String> {
        self.set_once("tickets", key, booking.to_string()).await
    }
    async fn cancel_ticket(&self, ticket_id: &str) -> Result<(), String> {
        self.set_once("cancelled-tickets", ticket_id, "1".into()).await
    }
    async fn reserve(&self, key: &str, booking: u64) -> Result<(), String> {
        self.set_once("reservations", key, booking.to_string()).await
    }
    async fn notify(&self, key: &str) -> Result<(), String> {
        self.set_once("notifications", key, "1".into()).await
    }
    async fn snapshot(&self) -> Result<Books, String> {
        let cancelled = self.all("cancelled-tickets").await?;
        let mut books = Books::default();
        for (id, value) in self.all("charges").await? {
            let (booking, amount) = value.split_once('|').unwrap_or((value.as_str(), "0"));
            books.charges.insert(id, (number(booking), number(amount)));
        }
        books.refunds = self
            .all("refunds")
            .await?
            .into_iter()
            .map(|(k, v)| (k, number(&v)))
            .collect();
        books.tickets = self
            .all("tickets")
            .await?
            .into_iter()
            .map(|(k, v)| (k.clone(), (number(&v), cancelled.contains_key(&k))))
            .collect();
        books.reservations = self
            .all("reservations")
            .await?
            .into_iter()
            .map(|(k, v)| (k, number(&v)))
            .collect();
        books.notifications = self.all("notifications").await?.into_keys().map(|k| (k, 1)).collect();
        books.executions = self
            .all("executions")
            .await?
            .into_iter()
            .map(|(k, v)| (k, number(&v)))
            .collect();
        let mut con = self.connection.clone();
        let transient: Option<u64> = redis::AsyncCommands::get(&mut con, self.key("transient"))
            .await
            .map_err(|e| e.to_string())?;
        books.transient_failures = transient.unwrap_or(0);
        Ok(books)
    }
}
