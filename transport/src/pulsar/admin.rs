//! The admin REST API: tenant, namespace and its policies, partitioned topics and the
//! subscriptions that keep dead letters, all created on first use and idempotently.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::config::{PulsarConfig, local_name};
use crate::{TransportError, locked};

/// The subscription every dead-letter topic gets when it is created, so its messages are kept
/// until an operator reads them (a topic without subscriptions keeps nothing past retention).
pub const DEAD_LETTER_SUBSCRIPTION: &str = "baton-dead-letters";

/// An admin REST client.
pub(crate) struct Admin {
    http: reqwest::Client,
    base: String,
    config: PulsarConfig,
    /// Topics known to exist.
    created: Mutex<HashSet<String>>,
    namespace_ready: tokio::sync::OnceCell<()>,
}

fn admin_error(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker {
        topic: "(admin)".into(),
        reason: format!("{what}: {e}"),
    }
}

impl Admin {
    pub(crate) fn new(config: &PulsarConfig) -> Result<Arc<Self>, TransportError> {
        // Our own rustls configuration (ring), also for http:// URLs: reqwest would otherwise
        // look for a process-wide crypto provider.
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.operation_timeout.max(Duration::from_secs(10)))
            .use_preconfigured_tls(super::tls::rustls_client_config(config)?);
        let http = http
            .build()
            .map_err(|e| admin_error("cannot build the admin client", e))?;
        Ok(Arc::new(Self {
            http,
            base: config.admin_base(),
            config: config.clone(),
            created: Mutex::new(HashSet::new()),
            namespace_ready: tokio::sync::OnceCell::new(),
        }))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, String), TransportError> {
        let url = format!("{}/admin/v2/{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| admin_error(&format!("{method} {url}"), e))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// Fails unless the status is a success or one of `also_fine`. A server error is retried a
    /// few times: creating the same tenant, namespace or topic from several processes at once
    /// makes Pulsar answer 500 to all but one, and the retry then sees a conflict.
    async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        also_fine: &[StatusCode],
    ) -> Result<StatusCode, TransportError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, text) = self.call(method.clone(), path, body.clone()).await?;
            if status.is_success() || also_fine.contains(&status) {
                return Ok(status);
            }
            if status.is_server_error() && attempt < 4 {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                continue;
            }
            let hint = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    " (check transport.pulsar.token and its role's permissions)"
                }
                _ => "",
            };
            return Err(admin_error(
                &format!("{method} {}/admin/v2/{path} answered {status}{hint}", self.base),
                reason_of(&text),
            ));
        }
    }

    /// Creates the tenant and namespace if missing, and sets the namespace's policies when it was
    /// created here (or always, with `policies.enforce`).
    pub(crate) async fn ensure_namespace(&self) -> Result<(), TransportError> {
        self.namespace_ready
            .get_or_try_init(|| async {
                let tenant = &self.config.tenant;
                let (status, _) = self.call(Method::GET, &format!("tenants/{tenant}"), None).await?;
                if status == StatusCode::NOT_FOUND {
                    let (status, clusters) = self.call(Method::GET, "clusters", None).await?;
                    if !status.is_success() {
                        return Err(admin_error("cannot list the clusters", status));
                    }
                    let clusters: Vec<String> =
                        serde_json::from_str(&clusters).map_err(|e| admin_error("unreadable cluster list", e))?;
                    self.expect(
                        Method::PUT,
                        &format!("tenants/{tenant}"),
                        Some(json!({ "allowedClusters": clusters })),
                        &[StatusCode::CONFLICT],
                    )
                    .await?;
                    tracing::info!(tenant, "created the Pulsar tenant");
                }
                let namespace = format!("{tenant}/{}", self.config.namespace);
                let created = self
                    .expect(
                        Method::PUT,
                        &format!("namespaces/{namespace}"),
                        None,
                        &[StatusCode::CONFLICT],
                    )
                    .await?
                    != StatusCode::CONFLICT;
                if created {
                    tracing::info!(%namespace, "created the Pulsar namespace");
                }
                if created || self.config.policies.enforce {
                    self.set_policies(&namespace).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn set_policies(&self, namespace: &str) -> Result<(), TransportError> {
        let p = &self.config.policies;
        self.expect(
            Method::POST,
            &format!("namespaces/{namespace}/retention"),
            Some(json!({ "retentionTimeInMinutes": p.retention_minutes, "retentionSizeInMB": p.retention_size_mb })),
            &[],
        )
        .await?;
        self.expect(
            Method::POST,
            &format!("namespaces/{namespace}/deduplication"),
            Some(json!(p.deduplication)),
            &[],
        )
        .await?;
        let inactive = if p.inactive_topic_delete_secs == 0 {
            json!({ "deleteWhileInactive": false, "maxInactiveDurationSeconds": 0, "inactiveTopicDeleteMode": "delete_when_subscriptions_caught_up" })
        } else {
            json!({ "deleteWhileInactive": true, "maxInactiveDurationSeconds": p.inactive_topic_delete_secs, "inactiveTopicDeleteMode": "delete_when_subscriptions_caught_up" })
        };
        self.expect(
            Method::POST,
            &format!("namespaces/{namespace}/inactiveTopicPolicies"),
            Some(inactive),
            &[],
        )
        .await?;
        tracing::info!(namespace, ?p, "set the Pulsar namespace policies");
        Ok(())
    }

    /// The REST path of a topic: `persistent/{tenant}/{namespace}/{encoded local name}`.
    fn topic_path(&self, topic: &str) -> String {
        let local = topic.rsplit('/').next().unwrap_or(topic);
        format!(
            "persistent/{}/{}/{}",
            self.config.tenant,
            self.config.namespace,
            encode_segment(local)
        )
    }

    /// Unloads each partition of `topics` (full names, partitioned or not) whose subscription
    /// `subscription` lists `consumer` more than once, and returns how many it unloaded. A
    /// process opens one consumer per partition and subscription under its name, so an extra
    /// entry is one the client does not know it has: a subscribe the broker completed after the
    /// client gave up waiting for it. The client never gives it permits or closes it, and a
    /// Failover subscription may make it the partition's active consumer, which stalls the
    /// partition. Unloading drops every consumer of the partition; clients reconnect the ones
    /// they know. One statistics request per topic, whatever its number of partitions.
    pub(crate) async fn clear_unknown_consumers(
        &self,
        topics: &[String],
        subscription: &str,
        consumer: &str,
    ) -> Result<usize, AuditFailure> {
        let mut unloaded = 0;
        for topic in topics {
            let stats = self.stats_by_partition(topic).await?;
            for partition in partitions_listing_twice(&stats, subscription, consumer) {
                let path = format!("{}/unload", self.topic_path(&partition));
                let (status, text) = self
                    .call(Method::PUT, &path, None)
                    .await
                    .map_err(AuditFailure::Unavailable)?;
                if !status.is_success() {
                    return Err(AuditFailure::of_status(
                        status,
                        &format!("unloading {partition}"),
                        &text,
                    ));
                }
                tracing::warn!(
                    topic = partition,
                    subscription,
                    consumer,
                    "unloaded a partition held by a consumer this client does not know"
                );
                unloaded += 1;
            }
        }
        Ok(unloaded)
    }

    /// The admin API's statistics of each partition of `topic`, by the partition's full name
    /// (a topic without partitions is its own single partition).
    async fn stats_by_partition(&self, topic: &str) -> Result<Vec<(String, serde_json::Value)>, AuditFailure> {
        let path = self.topic_path(topic);
        // A topic without partitions answers `partitioned-stats` with no partitions or an error.
        match self
            .stats_at(&format!("{path}/partitioned-stats?perPartition=true"), topic)
            .await
        {
            Ok(stats) => {
                let partitions = per_partition(&stats);
                if !partitions.is_empty() {
                    return Ok(partitions);
                }
            }
            Err(refused @ AuditFailure::Refused(_)) => return Err(refused),
            Err(AuditFailure::Unavailable(_)) => {}
        }
        let stats = self.stats_at(&format!("{path}/stats"), topic).await?;
        Ok(vec![(topic.to_string(), stats)])
    }

    /// One statistics document of `topic` from the admin API.
    async fn stats_at(&self, path: &str, topic: &str) -> Result<serde_json::Value, AuditFailure> {
        let what = format!("statistics of {topic}");
        let (status, text) = self
            .call(Method::GET, path, None)
            .await
            .map_err(AuditFailure::Unavailable)?;
        if !status.is_success() {
            return Err(AuditFailure::of_status(status, &what, &text));
        }
        serde_json::from_str(&text).map_err(|e| AuditFailure::Unavailable(admin_error(&what, e)))
    }

    /// Creates `topic` (a full Pulsar name) unless it exists: a partitioned topic with
    /// `partitions` partitions, or a non-partitioned one for `None` (a topic Pulsar can delete
    /// entirely once it is inactive). A dead-letter topic also gets [`DEAD_LETTER_SUBSCRIPTION`].
    pub(crate) async fn ensure_topic(
        &self,
        topic: &str,
        partitions: Option<u32>,
        dead_letters: bool,
    ) -> Result<(), TransportError> {
        if locked(&self.created).contains(topic) {
            return Ok(());
        }
        self.ensure_namespace().await?;
        let path = self.topic_path(topic);
        let status = match partitions {
            Some(partitions) => {
                self.expect(
                    Method::PUT,
                    &format!("{path}/partitions"),
                    Some(json!(partitions)),
                    &[StatusCode::CONFLICT],
                )
                .await?
            }
            None => self.expect(Method::PUT, &path, None, &[StatusCode::CONFLICT]).await?,
        };
        if status != StatusCode::CONFLICT {
            tracing::debug!(topic, ?partitions, "created a topic");
        }
        if dead_letters {
            self.expect(
                Method::PUT,
                &format!(
                    "{path}/subscription/{}",
                    encode_segment(&local_name(DEAD_LETTER_SUBSCRIPTION))
                ),
                Some(json!({ "ledgerId": -1, "entryId": -1, "partitionIndex": -1 })),
                &[StatusCode::CONFLICT],
            )
            .await?;
        }
        locked(&self.created).insert(topic.to_string());
        Ok(())
    }
}

/// The first line of the `reason` Pulsar gives with an error (its body may hold a stack trace).
fn reason_of(body: &str) -> String {
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    let line = reason
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("---"))
        .unwrap_or_default();
    line.chars().take(300).collect()
}

/// Percent-encodes a path segment (topic names hold `:`, which is fine, but nothing else odd
/// should reach the URL unencoded).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':' | b'=') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// How many consumers named `consumer` a topic's statistics (the admin API's `stats`) list in
/// `subscription`.
fn entries_named(stats: &serde_json::Value, subscription: &str, consumer: &str) -> usize {
    stats["subscriptions"][subscription]["consumers"]
        .as_array()
        .map_or(0, |consumers| {
            consumers
                .iter()
                .filter(|c| c["consumerName"].as_str() == Some(consumer))
                .count()
        })
}

/// Why the audit of a subscription's consumers could not run.
#[derive(Debug)]
pub(crate) enum AuditFailure {
    /// The admin API refused the token's role (401 or 403): the audit cannot work until the
    /// role may read statistics and unload topics.
    Refused(TransportError),
    /// The admin API did not answer or failed otherwise (an outage, a restart).
    Unavailable(TransportError),
}

impl AuditFailure {
    fn of_status(status: StatusCode, what: &str, body: &str) -> Self {
        let error = admin_error(&format!("{what}: the admin API answered {status}"), reason_of(body));
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Self::Refused(error),
            _ => Self::Unavailable(error),
        }
    }
}

/// The statistics of each partition in a partitioned topic's statistics (the admin API's
/// `partitioned-stats?perPartition=true`), by the partition's full name.
fn per_partition(stats: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    stats["partitions"].as_object().map_or_else(Vec::new, |partitions| {
        partitions
            .iter()
            .map(|(name, stats)| (name.clone(), stats.clone()))
            .collect()
    })
}

/// The partitions whose subscription `subscription` lists `consumer` more than once.
fn partitions_listing_twice(stats: &[(String, serde_json::Value)], subscription: &str, consumer: &str) -> Vec<String> {
    stats
        .iter()
        .filter(|(_, stats)| entries_named(stats, subscription, consumer) > 1)
        .map(|(partition, _)| partition.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{AuditFailure, entries_named, partitions_listing_twice, per_partition};
    use reqwest::StatusCode;

    #[test]
    fn consumers_are_counted_by_name_in_their_subscription() {
        let stats = serde_json::json!({
            "subscriptions": {
                "workflow-engine": {
                    "consumers": [
                        { "consumerName": "p-0", "availablePermits": 256 },
                        { "consumerName": "p-0", "availablePermits": 0 },
                        { "consumerName": "q-0", "availablePermits": 256 }
                    ]
                },
                "other": { "consumers": [ { "consumerName": "p-0" } ] }
            }
        });
        assert_eq!(entries_named(&stats, "workflow-engine", "p-0"), 2);
        assert_eq!(entries_named(&stats, "workflow-engine", "q-0"), 1);
        assert_eq!(entries_named(&stats, "other", "p-0"), 1);
        assert_eq!(entries_named(&stats, "missing", "p-0"), 0);
        assert_eq!(entries_named(&serde_json::json!({}), "workflow-engine", "p-0"), 0);
    }

    #[test]
    fn only_the_partitions_listing_a_consumer_twice_are_picked() {
        let stats = serde_json::json!({
            "msgBacklog": 1000,
            "partitions": {
                "persistent://baton/run/workflow-cmd:Booking-partition-0": {
                    "subscriptions": { "workflow-engine": { "consumers": [
                        { "consumerName": "p-3", "availablePermits": 256 }
                    ] } }
                },
                "persistent://baton/run/workflow-cmd:Booking-partition-1": {
                    "subscriptions": { "workflow-engine": { "consumers": [
                        { "consumerName": "p-3", "availablePermits": 256 },
                        { "consumerName": "q-1", "availablePermits": 256 },
                        { "consumerName": "p-3", "availablePermits": 0 }
                    ] } }
                }
            }
        });
        let partitions = per_partition(&stats);
        assert_eq!(partitions.len(), 2);
        assert_eq!(
            partitions_listing_twice(&partitions, "workflow-engine", "p-3"),
            vec!["persistent://baton/run/workflow-cmd:Booking-partition-1".to_string()]
        );
        assert!(partitions_listing_twice(&partitions, "workflow-engine", "q-1").is_empty());
        assert!(per_partition(&serde_json::json!({ "msgBacklog": 0 })).is_empty());
    }

    #[test]
    fn a_refused_role_is_told_apart_from_an_unavailable_admin_api() {
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let failure = AuditFailure::of_status(status, "statistics of t", r#"{"reason":"not authorized"}"#);
            assert!(matches!(failure, AuditFailure::Refused(ref e) if e.to_string().contains("not authorized")));
        }
        for status in [
            StatusCode::NOT_FOUND,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let failure = AuditFailure::of_status(status, "statistics of t", "");
            assert!(matches!(failure, AuditFailure::Unavailable(_)));
        }
    }
}
