//! Redis storage, the production default.
//!
//! Layout (every key under a configurable prefix, `baton:` by default):
//! - a workflow is three keys sharing the hash tag `{id}` (one slot in a cluster):
//!   `wf:{id}:head` (the encoded head), `wf:{id}:ver` (its version) and `wf:{id}:hist` (a list
//!   of encoded history entries). A Lua script checks the version and writes all three
//!   atomically, so a save appends only the new history entries.
//! - a key set is a sorted set with every score 0, paged lexicographically (`ZRANGEBYLEX`).
//! - timers are a sorted set `timers:queue` (member: timer id, score: when it can next be
//!   claimed) with hashes `timers:payload` and `timers:due`; claiming moves a timer's score to
//!   the end of its lease in the same script.
//!
//! Durability is Redis's: run it with AOF (`appendonly yes`, `appendfsync everysec` or
//! `always`), otherwise a Redis crash loses the last writes and the workflows they carried.

use std::time::Duration;

use baton_shared_schemas::{TimerId, Timestamp, WorkflowId};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, IntoConnectionInfo, Script};

use crate::dead_letters::{DeadLetter, DeadLetterPage, DeadLetterStore};
use crate::index::{self, IndexEntry, IndexedInstance, InstanceIndex, InstancePage, InstanceQuery, WorkflowCounts};
use crate::{
    Expected, HistoryWrite, InstanceStatus, KeySetStore, Result, SetPage, StorageError, StoredTimer, StoredWorkflow,
    TimerStore, WorkflowStore, WorkflowWrite,
};

const SAVE: &str = r#"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == 'replace' then redis.call('DEL', KEYS[3]) end
local entries = tonumber(ARGV[4])
for i = 5, 4 + entries do redis.call('RPUSH', KEYS[3], ARGV[i]) end
local at = 5 + entries
if ARGV[at] then
  local of, id, member = ARGV[at], ARGV[at + 3], ARGV[at + 4]
  local old = redis.call('HGET', of, id)
  if old then
    local old_member
    for line in string.gmatch(old, '[^\n]+') do
      if old_member then redis.call('ZREM', line, old_member) else old_member = line end
    end
  end
  -- Built as a table and joined once: concatenating in the loop copies the record each time,
  -- quadratic in the number of index sets (tags).
  local record = { member }
  for i = at + 7, #ARGV do
    redis.call('ZADD', ARGV[i], 0, member)
    record[#record + 1] = ARGV[i]
  end
  redis.call('HSET', of, id, table.concat(record, '\n'))
  redis.call('HSET', ARGV[at + 1], id, ARGV[at + 5])
  redis.call('SADD', ARGV[at + 2], ARGV[at + 6])
end
local next = current + 1
redis.call('SET', KEYS[2], next)
return next
"#;

const DELETE: &str = r#"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= 0 and current ~= tonumber(ARGV[1]) then return -1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local old = redis.call('HGET', ARGV[2], ARGV[4])
if old then
  local old_member
  for line in string.gmatch(old, '[^\n]+') do
    if old_member then redis.call('ZREM', line, old_member) else old_member = line end
  end
  redis.call('HDEL', ARGV[2], ARGV[4])
  redis.call('HDEL', ARGV[3], ARGV[4])
end
return 1
"#;

const LOAD: &str = r#"
local version = redis.call('GET', KEYS[2])
if not version then return {} end
local result = { version, redis.call('GET', KEYS[1]) }
for _, entry in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do table.insert(result, entry) end
return result
"#;

const TIMER_ADD: &str = r#"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"#;

const TIMER_CLAIM: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local result = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  table.insert(result, id)
  table.insert(result, redis.call('HGET', KEYS[3], id) or '0')
  table.insert(result, redis.call('HGET', KEYS[2], id) or '')
end
return result
"#;

const TIMER_REMOVE: &str = r#"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return removed
"#;

/// How the connection to Redis behaves when Redis is slow or away.
///
/// The connection reconnects by itself; these bound how long any one command can wait, so a
/// command issued during an outage fails within seconds (and the component retries it) instead
/// of being parked until a long reconnect delay ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Longest wait for one connection attempt.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one command.
    pub response_timeout: Duration,
    /// Longest delay between two reconnection attempts (they start at one second).
    pub max_reconnect_delay: Duration,
    /// Reconnection attempts a waiting command rides through before it fails.
    pub reconnect_attempts: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(3),
            max_reconnect_delay: Duration::from_secs(1),
            reconnect_attempts: 2,
        }
    }
}

impl RedisOptions {
    /// The connection manager's settings. Its reconnect delays start at one second and are
    /// multiplied by `factor` per attempt: redis-rs's default factor of 100 makes the second
    /// delay 100 s (capped at 60), which is what parked commands for a minute after a short
    /// outage. Here they double, capped at `max_reconnect_delay`.
    pub fn manager_config(&self) -> redis::aio::ConnectionManagerConfig {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout)
            .set_factor(2)
            .set_max_delay(millis(self.max_reconnect_delay))
            .set_number_of_retries(self.reconnect_attempts)
    }

    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() || self.max_reconnect_delay.is_zero() {
            return Err(StorageError::Config(
                "redis connect timeout, response timeout and reconnect delay must be above zero".into(),
            ));
        }
        Ok(())
    }
}

/// How to reach and sign in to Redis beyond what its URL says: the `AUTH` user and password,
/// kept apart from the URL so a password can come from a mounted secret file and never appear
/// in a URL, a log line or an error, and, for `rediss://` URLs, which authority to trust and
/// which client certificate to show.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisAccess {
    /// The ACL user (none: the default user).
    pub username: Option<String>,
    /// The password (none: no `AUTH`, unless the URL carries one).
    pub password: Option<String>,
    /// PEM certificates of the authorities to trust (none: the system's roots).
    pub tls_roots: Option<Vec<u8>>,
    /// A PEM client certificate and its PEM private key, for servers that require one.
    pub tls_client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAccess")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls_roots", &self.tls_roots.as_ref().map(|r| r.len()))
            .field("tls_client", &self.tls_client.as_ref().map(|_| "<certificate>"))
            .finish()
    }
}

/// Every store on one Redis server.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    save: Script,
    delete: Script,
    load: Script,
    timer_add: Script,
    timer_claim: Script,
    timer_remove: Script,
}

fn backend(e: redis::RedisError) -> StorageError {
    StorageError::Backend(e.to_string())
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) with default [`RedisOptions`]; keys start
    /// with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::connect_with(url, prefix, RedisOptions::default()).await
    }

    /// Connects with explicit options. Fails if the server cannot be reached within the
    /// options' reconnect attempts (a few seconds); callers retry up to their own deadline.
    pub async fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<Self> {
        Self::connect_as(url, &RedisAccess::default(), prefix, options).await
    }

    /// Connects with explicit options, signing in and trusting as `access` says (its user and
    /// password win over those written in `url`).
    pub async fn connect_as(url: &str, access: &RedisAccess, prefix: &str, options: RedisOptions) -> Result<Self> {
        options.validate()?;
        let shown = baton_runtime::redact_url(url);
        let mut info = url
            .into_connection_info()
            .map_err(|e| StorageError::Config(format!("redis url {shown}: {e}")))?;
        if let Some(username) = &access.username {
            info.redis.username = Some(username.clone());
        }
        if let Some(password) = &access.password {
            info.redis.password = Some(password.clone());
        }
        let tls = url.starts_with("rediss://");
        let custom_tls = access.tls_roots.is_some() || access.tls_client.is_some();
        if custom_tls && !tls {
            return Err(StorageError::Config(format!(
                "redis url {shown}: TLS settings (storage.tls_ca_file, storage.tls_cert_file) need a rediss:// URL"
            )));
        }
        if tls {
            // redis-rs builds its TLS configuration with rustls' process-wide provider; Baton
            // uses ring everywhere. Installing fails harmlessly if one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = if custom_tls {
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: access.tls_client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: access.tls_roots.clone(),
                },
            )
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| StorageError::Config(format!("redis url {shown}: {e}")))?;
        // One plain connection first: the connection manager retries a refused sign-in as if
        // Redis were down, and a wrong password is a setting, not an outage.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(options.connect_timeout)
            .set_response_timeout(options.response_timeout);
        let probed = match client.get_multiplexed_async_connection_with_config(&probe).await {
            // Without credentials the connection opens, and the first command is refused.
            Ok(mut connection) => redis::cmd("PING").query_async::<()>(&mut connection).await,
            Err(e) => Err(e),
        };
        if let Err(e) = probed {
            let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
                || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
            if refused {
                return Err(StorageError::Config(format!(
                    "redis at {shown} refused the sign-in (storage.username, storage.password or storage.password_file): {e}"
                )));
            }
            // A certificate that is not trusted, or a handshake the server refuses, is a setting
            // too: waiting does not change it.
            let text = e.to_string();
            if tls
                && (text.contains("certificate") || text.contains("handshake") || text.contains("CertificateRequired"))
            {
                return Err(StorageError::Config(format!(
                    "redis at {shown}: TLS failed (storage.tls_ca_file, storage.tls_cert_file, storage.tls_key_file): {e}"
                )));
            }
        }
        let connection = ConnectionManager::new_with_config(client, options.manager_config())
            .await
            .map_err(|e| StorageError::Backend(format!("cannot reach redis at {shown}: {e}")))?;
        Ok(Self {
            connection,
            prefix: prefix.to_string(),
            save: Script::new(SAVE),
            delete: Script::new(DELETE),
            load: Script::new(LOAD),
            timer_add: Script::new(TIMER_ADD),
            timer_claim: Script::new(TIMER_CLAIM),
            timer_remove: Script::new(TIMER_REMOVE),
        })
    }

    fn workflow_keys(&self, id: WorkflowId) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}wf:{{{id}}}:head"),
            format!("{p}wf:{{{id}}}:ver"),
            format!("{p}wf:{{{id}}}:hist"),
        ]
    }

    /// Runs a pipeline of `EVALSHA` calls in one round trip. Redis forgets scripts on a restart
    /// (or `SCRIPT FLUSH`); a script it does not know fails without running, so the pipeline is
    /// sent again once the scripts are loaded.
    async fn pipelined<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline, scripts: &[&Script]) -> Result<T> {
        let mut con = self.connection.clone();
        match pipe.query_async(&mut con).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                for script in scripts {
                    script.prepare_invoke().load_async(&mut con).await.map_err(backend)?;
                }
                pipe.query_async(&mut con).await.map_err(backend)
            }
            answered => answered.map_err(backend),
        }
    }

    /// The index's hashes and set: each instance's member and sets, each instance's entry,
    /// and the workflow names seen.
    fn index_keys(&self) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}idx:of"),
            format!("{p}idx:entry"),
            format!("{p}idx:workflows"),
        ]
    }

    /// The `EVALSHA` of one save, for a pipeline.
    fn save_command(&self, w: WorkflowWrite) -> Result<redis::Cmd> {
        let (mode, entries) = match w.history {
            HistoryWrite::Append(entries) => ("append", entries),
            HistoryWrite::Replace(entries) => ("replace", entries),
        };
        let mut cmd = eval_on(&self.save, &self.workflow_keys(w.id));
        cmd.arg(expected_version(w.expected))
            .arg(w.head)
            .arg(mode)
            .arg(entries.len());
        for entry in entries {
            cmd.arg(entry);
        }
        if let Some(entry) = w.index {
            let [of, entries_key, workflows] = self.index_keys();
            cmd.arg(of)
                .arg(entries_key)
                .arg(workflows)
                .arg(w.id.to_string())
                .arg(index::member(w.id, entry.started_at))
                .arg(entry.encode()?)
                .arg(&entry.workflow);
            for key in index::set_keys(&entry) {
                cmd.arg(format!("{p}{key}", p = self.prefix));
            }
        }
        Ok(cmd)
    }

    /// Sends a pipeline of saves and reads one answer per save.
    async fn send_saves(&self, pipe: &redis::Pipeline, asked: Vec<(WorkflowId, Expected)>) -> Vec<Result<u64>> {
        if asked.is_empty() {
            return Vec::new();
        }
        match self.pipelined::<Vec<i64>>(pipe, &[&self.save]).await {
            Ok(versions) if versions.len() == asked.len() => asked
                .into_iter()
                .zip(versions)
                .map(|((id, expected), version)| saved_as(id, expected, version))
                .collect(),
            Ok(versions) => {
                let reason = format!("redis answered {} of {} saves", versions.len(), asked.len());
                asked
                    .iter()
                    .map(|_| Err(StorageError::Backend(reason.clone())))
                    .collect()
            }
            // Some of the saves may have been applied: their writers find out on the next
            // compare-and-set, as after any save whose answer was lost.
            Err(e) => {
                let reason = match e {
                    StorageError::Backend(reason) => reason,
                    other => other.to_string(),
                };
                asked
                    .iter()
                    .map(|_| Err(StorageError::Backend(reason.clone())))
                    .collect()
            }
        }
    }

    /// One page of a sorted set whose scores are all 0, by member range: `command` is
    /// `ZRANGEBYLEX` (`start` ≤ `end`) or `ZREVRANGEBYLEX` (`start` ≥ `end`), the bounds in
    /// Redis's lex syntax.
    async fn lex_page(&self, command: &str, key: &str, start: &str, end: &str, limit: usize) -> Result<SetPage> {
        let limit = limit.max(1);
        let mut con = self.connection.clone();
        let members: Vec<String> = redis::cmd(command)
            .arg(key)
            .arg(start)
            .arg(end)
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut con)
            .await
            .map_err(backend)?;
        Ok(SetPage::from_one_extra(members, limit))
    }

    fn timer_keys(&self) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}timers:queue"),
            format!("{p}timers:payload"),
            format!("{p}timers:due"),
        ]
    }

    fn set_key(&self, key: &str) -> String {
        format!("{}set:{key}", self.prefix)
    }
}

/// An `EVALSHA` of `script` on a workflow's three keys, for a pipeline.
fn eval_on(script: &Script, keys: &[String; 3]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(3)
        .arg(&keys[0])
        .arg(&keys[1])
        .arg(&keys[2]);
    cmd
}

/// The record the load script answered with: nothing, or version, head, history entries.
fn stored_from(id: WorkflowId, mut parts: Vec<Vec<u8>>) -> Result<Option<StoredWorkflow>> {
    if parts.len() < 2 {
        return Ok(None);
    }
    let history = parts.split_off(2);
    let head = parts.pop().unwrap_or_default();
    let version = String::from_utf8_lossy(&parts[0])
        .parse::<u64>()
        .map_err(|e| StorageError::Backend(format!("corrupt version of workflow {id}: {e}")))?;
    Ok(Some(StoredWorkflow { version, head, history }))
}

/// The result of one save: the new version, or a lost compare-and-set.
fn saved_as(id: WorkflowId, expected: Expected, version: i64) -> Result<u64> {
    u64::try_from(version).map_err(|_| StorageError::Conflict { id, expected })
}

fn expected_version(expected: Expected) -> u64 {
    match expected {
        Expected::Absent => 0,
        Expected::Version(v) => v,
    }
}

#[async_trait::async_trait]
impl WorkflowStore for RedisStore {
    async fn load(&self, id: WorkflowId) -> Result<Option<StoredWorkflow>> {
        let keys = self.workflow_keys(id);
        let mut con = self.connection.clone();
        let parts: Vec<Vec<u8>> = self
            .load
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        stored_from(id, parts)
    }

    async fn load_all(&self, ids: &[WorkflowId]) -> Result<Vec<Option<StoredWorkflow>>> {
        match ids {
            [] => return Ok(Vec::new()),
            [id] => return Ok(vec![self.load(*id).await?]),
            _ => {}
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.add_command(eval_on(&self.load, &self.workflow_keys(*id)));
        }
        let answers: Vec<Vec<Vec<u8>>> = self.pipelined(&pipe, &[&self.load]).await?;
        if answers.len() != ids.len() {
            return Err(StorageError::Backend(format!(
                "redis answered {} of {} loads",
                answers.len(),
                ids.len()
            )));
        }
        ids.iter()
            .zip(answers)
            .map(|(id, parts)| stored_from(*id, parts))
            .collect()
    }

    async fn save_all(&self, writes: Vec<WorkflowWrite>) -> Vec<Result<u64>> {
        if writes.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        let mut asked = Vec::with_capacity(writes.len());
        let mut refused = Vec::new();
        for (i, w) in writes.into_iter().enumerate() {
            let (id, expected) = (w.id, w.expected);
            match self.save_command(w) {
                Ok(cmd) => {
                    pipe.add_command(cmd);
                    asked.push((id, expected));
                }
                Err(e) => refused.push((i, e)),
            }
        }
        let mut saved = self.send_saves(&pipe, asked).await;
        for (i, e) in refused {
            saved.insert(i, Err(e));
        }
        saved
    }

    async fn save(&self, write: WorkflowWrite) -> Result<u64> {
        self.save_all(vec![write])
            .await
            .pop()
            .unwrap_or_else(|| Err(StorageError::Backend("redis answered no save".into())))
    }

    async fn version(&self, id: WorkflowId) -> Result<Option<u64>> {
        let keys = self.workflow_keys(id);
        let mut con = self.connection.clone();
        let version: Option<u64> = con.get(&keys[1]).await.map_err(backend)?;
        Ok(version)
    }

    async fn delete(&self, id: WorkflowId, version: u64) -> Result<()> {
        let keys = self.workflow_keys(id);
        let [of, entries, _] = self.index_keys();
        let mut con = self.connection.clone();
        let done: i64 = self
            .delete
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(version)
            .arg(of)
            .arg(entries)
            .arg(id.to_string())
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        if done < 0 {
            return Err(StorageError::Conflict {
                id,
                expected: Expected::Version(version),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl InstanceIndex for RedisStore {
    async fn search(&self, query: &InstanceQuery) -> Result<InstancePage> {
        let key = format!(
            "{}{}",
            self.prefix,
            index::set_key(query.workflow.as_deref(), query.tag.as_deref(), query.status)
        );
        let (upper, lower) = index::bounds(query);
        let max = upper.map_or_else(|| "+".to_string(), |u| format!("({u}"));
        let min = lower.map_or_else(|| "-".to_string(), |l| format!("[{l}"));
        let page = self.lex_page("ZREVRANGEBYLEX", &key, &max, &min, query.limit).await?;
        if page.members.is_empty() {
            return Ok(InstancePage::default());
        }
        let mut con = self.connection.clone();
        let ids = page
            .members
            .iter()
            .map(|m| index::member_id(m))
            .collect::<Result<Vec<WorkflowId>>>()?;
        let [_, entries, _] = self.index_keys();
        let blobs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(entries)
            .arg(ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .query_async(&mut con)
            .await
            .map_err(backend)?;
        let mut instances = Vec::with_capacity(ids.len());
        for (id, blob) in ids.into_iter().zip(blobs) {
            // A member whose entry is gone was deleted between the two reads.
            if let Some(blob) = blob {
                instances.push(IndexedInstance {
                    id,
                    entry: IndexEntry::decode(&blob)?,
                });
            }
        }
        Ok(InstancePage {
            instances,
            next_cursor: page.next_cursor,
        })
    }

    async fn counts(&self) -> Result<Vec<WorkflowCounts>> {
        let [_, _, workflows_key] = self.index_keys();
        let mut con = self.connection.clone();
        let mut workflows: Vec<String> = con.smembers(workflows_key).await.map_err(backend)?;
        workflows.sort();
        if workflows.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for workflow in &workflows {
            for status in InstanceStatus::ALL {
                pipe.zcard(format!(
                    "{}{}",
                    self.prefix,
                    index::set_key(Some(workflow), None, Some(status))
                ));
            }
        }
        let cards: Vec<u64> = pipe.query_async(&mut con).await.map_err(backend)?;
        Ok(workflows
            .into_iter()
            .zip(cards.chunks(InstanceStatus::ALL.len()))
            .map(|(workflow, cards)| WorkflowCounts {
                workflow,
                counts: InstanceStatus::ALL.into_iter().zip(cards.iter().copied()).collect(),
            })
            .collect())
    }

    async fn entry(&self, id: WorkflowId) -> Result<Option<IndexEntry>> {
        let [_, entries, _] = self.index_keys();
        let mut con = self.connection.clone();
        let blob: Option<Vec<u8>> = con.hget(entries, id.to_string()).await.map_err(backend)?;
        blob.map(|b| IndexEntry::decode(&b)).transpose()
    }
}

/// Dead letters: a sorted set per topic `dlq|{topic}` (members `{collected}|{id}`, every score 0),
/// a hash per topic `dlq-letters|{topic}` (id → letter) and the set of topics `dlq-topics`.
impl RedisStore {
    fn letter_keys(&self, topic: &str) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}dlq|{topic}"),
            format!("{p}dlq-letters|{topic}"),
            format!("{p}dlq-topics"),
        ]
    }
}

const LETTER_ADD: &str = r#"
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], 0, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"#;

const LETTER_REMOVE: &str = r#"
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
return 1
"#;

#[async_trait::async_trait]
impl DeadLetterStore for RedisStore {
    async fn add(&self, letter: DeadLetter) -> Result<bool> {
        let keys = self.letter_keys(&letter.topic);
        let mut con = self.connection.clone();
        let added: i64 = Script::new(LETTER_ADD)
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(&letter.id)
            .arg(letter.member())
            .arg(letter.encode()?)
            .arg(&letter.topic)
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        Ok(added == 1)
    }

    async fn topics(&self) -> Result<Vec<(String, u64)>> {
        let mut con = self.connection.clone();
        let mut topics: Vec<String> = con
            .smembers(format!("{}dlq-topics", self.prefix))
            .await
            .map_err(backend)?;
        topics.sort();
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for topic in &topics {
            pipe.zcard(&self.letter_keys(topic)[0]);
        }
        let counts: Vec<u64> = pipe.query_async(&mut con).await.map_err(backend)?;
        Ok(topics.into_iter().zip(counts).filter(|(_, n)| *n > 0).collect())
    }

    async fn page(&self, topic: &str, cursor: Option<&str>, limit: usize) -> Result<DeadLetterPage> {
        let keys = self.letter_keys(topic);
        let min = cursor.map_or_else(|| "-".to_string(), |c| format!("({c}"));
        let page = self.lex_page("ZRANGEBYLEX", &keys[0], &min, "+", limit).await?;
        if page.members.is_empty() {
            return Ok(DeadLetterPage::default());
        }
        let mut con = self.connection.clone();
        let ids: Vec<&str> = page
            .members
            .iter()
            .map(|m| m.split_once('|').map_or(m.as_str(), |(_, id)| id))
            .collect();
        let blobs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&keys[1])
            .arg(&ids)
            .query_async(&mut con)
            .await
            .map_err(backend)?;
        let letters = blobs
            .into_iter()
            .flatten()
            .map(|b| DeadLetter::decode(&b))
            .collect::<Result<Vec<_>>>()?;
        Ok(DeadLetterPage {
            letters,
            next_cursor: page.next_cursor,
        })
    }

    async fn get(&self, topic: &str, id: &str) -> Result<Option<DeadLetter>> {
        let keys = self.letter_keys(topic);
        let mut con = self.connection.clone();
        let blob: Option<Vec<u8>> = con.hget(&keys[1], id).await.map_err(backend)?;
        blob.map(|b| DeadLetter::decode(&b)).transpose()
    }

    async fn remove(&self, topic: &str, id: &str) -> Result<bool> {
        let Some(letter) = self.get(topic, id).await? else {
            return Ok(false);
        };
        let keys = self.letter_keys(topic);
        let mut con = self.connection.clone();
        let removed: i64 = Script::new(LETTER_REMOVE)
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(id)
            .arg(letter.member())
            .arg(topic)
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        Ok(removed == 1)
    }
}

#[async_trait::async_trait]
impl KeySetStore for RedisStore {
    async fn add(&self, key: &str, member: &str) -> Result<()> {
        let mut con = self.connection.clone();
        con.zadd::<_, _, _, ()>(self.set_key(key), member, 0)
            .await
            .map_err(backend)
    }

    async fn remove(&self, key: &str, member: &str) -> Result<()> {
        let mut con = self.connection.clone();
        con.zrem::<_, _, ()>(self.set_key(key), member).await.map_err(backend)
    }

    async fn page(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<SetPage> {
        let min = cursor.map_or_else(|| "-".to_string(), |c| format!("({c}"));
        self.lex_page("ZRANGEBYLEX", &self.set_key(key), &min, "+", limit).await
    }
}

#[async_trait::async_trait]
impl TimerStore for RedisStore {
    async fn add(&self, timer: StoredTimer) -> Result<bool> {
        let keys = self.timer_keys();
        let mut con = self.connection.clone();
        let added: i64 = self
            .timer_add
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(timer.id.to_string())
            .arg(timer.due.as_millis())
            .arg(timer.payload)
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        Ok(added == 1)
    }

    async fn add_all(&self, timers: Vec<StoredTimer>) -> Result<()> {
        if timers.is_empty() {
            return Ok(());
        }
        let keys = self.timer_keys();
        let mut pipe = redis::pipe();
        for timer in timers {
            let mut add = eval_on(&self.timer_add, &keys);
            add.arg(timer.id.to_string())
                .arg(timer.due.as_millis())
                .arg(timer.payload);
            pipe.add_command(add);
        }
        self.pipelined::<Vec<i64>>(&pipe, &[&self.timer_add]).await.map(|_| ())
    }

    async fn complete_all(&self, ids: &[TimerId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let [queue, payloads, dues] = self.timer_keys();
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut con = self.connection.clone();
        redis::pipe()
            .atomic()
            .zrem(&queue, &ids)
            .ignore()
            .hdel(&payloads, &ids)
            .ignore()
            .hdel(&dues, &ids)
            .ignore()
            .query_async::<()>(&mut con)
            .await
            .map_err(backend)
    }

    async fn claim_due(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<StoredTimer>> {
        let keys = self.timer_keys();
        let until = now.saturating_add(lease.max(Duration::from_millis(1)));
        let mut con = self.connection.clone();
        let flat: Vec<Vec<u8>> = self
            .timer_claim
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(now.as_millis())
            .arg(until.as_millis())
            .arg(limit.max(1))
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        let mut timers = Vec::with_capacity(flat.len() / 3);
        for chunk in flat.chunks_exact(3) {
            let id = String::from_utf8_lossy(&chunk[0])
                .parse::<TimerId>()
                .map_err(|e| StorageError::Backend(format!("corrupt timer id: {e}")))?;
            let due = String::from_utf8_lossy(&chunk[1]).parse::<u64>().unwrap_or(0);
            timers.push(StoredTimer {
                id,
                due: Timestamp(due),
                payload: chunk[2].clone(),
            });
        }
        Ok(timers)
    }

    async fn complete(&self, id: TimerId) -> Result<()> {
        self.cancel(id).await.map(|_| ())
    }

    async fn cancel(&self, id: TimerId) -> Result<bool> {
        let keys = self.timer_keys();
        let mut con = self.connection.clone();
        let removed: i64 = self
            .timer_remove
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(id.to_string())
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
        Ok(removed == 1)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        let mut con = self.connection.clone();
        let first: Vec<(String, f64)> = con
            .zrange_withscores(&self.timer_keys()[0], 0, 0)
            .await
            .map_err(backend)?;
        Ok(first.first().map(|(_, score)| Timestamp(*score as u64)))
    }

    async fn count(&self) -> Result<u64> {
        let mut con = self.connection.clone();
        con.zcard(&self.timer_keys()[0]).await.map_err(backend)
    }

    async fn pending(&self, limit: usize) -> Result<Vec<StoredTimer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let [queue, payloads, dues] = self.timer_keys();
        let mut con = self.connection.clone();
        let ids: Vec<String> = con
            .zrange(&queue, 0, isize::try_from(limit - 1).unwrap_or(isize::MAX))
            .await
            .map_err(backend)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (payloads, dues): (Vec<Option<Vec<u8>>>, Vec<Option<u64>>) = redis::pipe()
            .cmd("HMGET")
            .arg(&payloads)
            .arg(&ids)
            .cmd("HMGET")
            .arg(&dues)
            .arg(&ids)
            .query_async(&mut con)
            .await
            .map_err(backend)?;
        let mut timers = Vec::with_capacity(ids.len());
        for ((id, payload), due) in ids.iter().zip(payloads).zip(dues) {
            // One removed between the two reads is not pending any more.
            let (Some(payload), Some(due)) = (payload, due) else {
                continue;
            };
            let id = id
                .parse::<TimerId>()
                .map_err(|e| StorageError::Backend(format!("corrupt timer id: {e}")))?;
            timers.push(StoredTimer {
                id,
                due: Timestamp(due),
                payload,
            });
        }
        Ok(timers)
    }
}

#[async_trait::async_trait]
impl crate::StoreHealth for RedisStore {
    /// A write, not a `PING`: a Redis that answers but refuses writes (its append-only file's
    /// disk is full, `maxmemory` with no eviction, too few replicas) cannot be used either.
    async fn check(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(format!("{}health", self.prefix))
            .arg("ok")
            .arg("PX")
            .arg(60_000)
            .query_async::<()>(&mut connection)
            .await
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use baton_runtime::redact_url as without_password;

    #[test]
    fn messages_never_show_a_password_from_the_url() {
        assert_eq!(
            without_password("redis://app:s3cret@redis:6379/0"),
            "redis://app:<redacted>@redis:6379/0"
        );
        assert_eq!(
            without_password("redis://:s3cret@redis:6379"),
            "redis://:<redacted>@redis:6379"
        );
        assert_eq!(without_password("redis://redis:6379/0"), "redis://redis:6379/0");
    }
}
