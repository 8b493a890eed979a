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
use redis::{AsyncCommands, Script};

use crate::{
    Expected, HistoryWrite, KeySetStore, Result, SetPage, StorageError, StoredTimer, StoredWorkflow, TimerStore,
    WorkflowStore,
};

const SAVE: &str = r#"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == 'replace' then redis.call('DEL', KEYS[3]) end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
local next = current + 1
redis.call('SET', KEYS[2], next)
return next
"#;

const DELETE: &str = r#"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= 0 and current ~= tonumber(ARGV[1]) then return -1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
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
    /// Connects to `url` (`redis://host:port/db`); keys start with `prefix`. Fails if the
    /// server cannot be reached within ten seconds.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(backend)?;
        let connection = tokio::time::timeout(Duration::from_secs(10), ConnectionManager::new(client))
            .await
            .map_err(|_| StorageError::Backend(format!("cannot reach redis at {url} within 10 s")))?
            .map_err(backend)?;
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
        let mut parts: Vec<Vec<u8>> = self
            .load
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .invoke_async(&mut con)
            .await
            .map_err(backend)?;
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

    async fn save(&self, id: WorkflowId, expected: Expected, head: Vec<u8>, history: HistoryWrite) -> Result<u64> {
        let keys = self.workflow_keys(id);
        let (mode, entries) = match history {
            HistoryWrite::Append(entries) => ("append", entries),
            HistoryWrite::Replace(entries) => ("replace", entries),
        };
        let mut invocation = self.save.key(&keys[0]);
        invocation
            .key(&keys[1])
            .key(&keys[2])
            .arg(expected_version(expected))
            .arg(head)
            .arg(mode);
        for entry in entries {
            invocation.arg(entry);
        }
        let mut con = self.connection.clone();
        let version: i64 = invocation.invoke_async(&mut con).await.map_err(backend)?;
        u64::try_from(version).map_err(|_| StorageError::Conflict { id, expected })
    }

    async fn version(&self, id: WorkflowId) -> Result<Option<u64>> {
        let keys = self.workflow_keys(id);
        let mut con = self.connection.clone();
        let version: Option<u64> = con.get(&keys[1]).await.map_err(backend)?;
        Ok(version)
    }

    async fn delete(&self, id: WorkflowId, version: u64) -> Result<()> {
        let keys = self.workflow_keys(id);
        let mut con = self.connection.clone();
        let done: i64 = self
            .delete
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .arg(version)
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
        let limit = limit.max(1);
        let min = match cursor {
            Some(c) => format!("({c}"),
            None => "-".to_string(),
        };
        let mut con = self.connection.clone();
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.set_key(key))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut con)
            .await
            .map_err(backend)?;
        Ok(SetPage::from_one_extra(members, limit))
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
}
