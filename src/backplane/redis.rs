//! The Redis backplane: the node registry, the routing owner's lease with its
//! fencing token, and each node's channel.
//!
//! Keys (all under the configured prefix `P`):
//! - `P:node:<id>`: a node's registration (its listen address), kept alive by its
//!   heartbeat and gone `expiry_ms` after the last one; `P:nodes` lists every id seen.
//! - `P:lease`: `"<node> <fence>"`, the routing owner; renewed by its heartbeat.
//! - `P:fence`: the last fencing token handed out (never below the store's).
//! - `P:ready`: the lease value, once its owner has restored state and serves.
//! - channel `P:to:<id>`: batches of frames for a node (`envelope`).
//!
//! One heartbeat is one Lua script (one round trip): register, renew or acquire
//! the lease, read who is ready.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use tokio::sync::mpsc;

/// Register, then renew (the owner) or try to acquire (anyone, when free) the lease.
const BEAT: &str = r"
local was = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'GET')
redis.call('SADD', KEYS[2], ARGV[1])
local lease = redis.call('GET', KEYS[3])
if lease then
  if string.sub(lease, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
    if redis.call('GET', KEYS[5]) == lease then
      redis.call('PEXPIRE', KEYS[5], ARGV[3])
    end
  end
elseif ARGV[5] == '1' then
  local f = tonumber(redis.call('GET', KEYS[4]) or '0')
  if f < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[4], ARGV[4])
  end
  lease = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[4])
  redis.call('SET', KEYS[3], lease, 'PX', ARGV[3])
end
local ready = redis.call('GET', KEYS[5])
return {was and 1 or 0, lease or '', ready or ''}
";

/// Marks the lease ready, if it is still the caller's.
const READY: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Gives the lease up, if it is still the caller's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
  end
  return 1
end
return 0
";

/// The routing owner as a lease names it: node and fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub fence: u64,
}

impl Lease {
    fn parse(s: &str) -> Option<Lease> {
        let (node, fence) = s.rsplit_once(' ')?;
        Some(Lease {
            node: node.to_owned(),
            fence: fence.parse().ok()?,
        })
    }

    pub fn value(&self) -> String {
        format!("{} {}", self.node, self.fence)
    }
}

/// What one heartbeat learned.
#[derive(Debug)]
pub struct Beat {
    /// This node's registration was still there (false on the first beat, or after
    /// the registry expired it: it was away too long).
    pub was_registered: bool,
    pub lease: Option<Lease>,
    /// The owner that has restored state and serves.
    pub ready: Option<Lease>,
}

pub struct Backplane {
    conn: MultiplexedConnection,
    prefix: String,
    pub node: String,
    listen: String,
    expiry: Duration,
    beat: Script,
    ready: Script,
    release: Script,
}

impl Backplane {
    /// Connects, and subscribes to this node's channel: every batch that arrives on
    /// it goes to the returned receiver, which ends when the subscription is lost.
    pub async fn connect(
        url: &str,
        prefix: &str,
        node: &str,
        listen: &str,
        expiry: Duration,
    ) -> Result<(Backplane, mpsc::Receiver<Bytes>), RedisError> {
        let client = Client::open(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(expiry))
            .set_response_timeout(Some(expiry));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(format!("{prefix}:to:{node}")).await?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                if tx.send(payload).await.is_err() {
                    break;
                }
            }
        });
        Ok((
            Backplane {
                conn,
                prefix: prefix.to_owned(),
                node: node.to_owned(),
                listen: listen.to_owned(),
                expiry,
                beat: Script::new(BEAT),
                ready: Script::new(READY),
                release: Script::new(RELEASE),
            },
            rx,
        ))
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn expiry_ms(&self) -> u64 {
        u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers this node and renews or (as a `candidate`, with fencing tokens
    /// above `fence_floor`) acquires the lease.
    pub async fn beat(&mut self, candidate: bool, fence_floor: u64) -> Result<Beat, RedisError> {
        let (was, lease, ready): (i64, String, String) = self
            .beat
            .key(self.key(&format!("node:{}", self.node)))
            .key(self.key("nodes"))
            .key(self.key("lease"))
            .key(self.key("fence"))
            .key(self.key("ready"))
            .arg(&self.node)
            .arg(&self.listen)
            .arg(self.expiry_ms())
            .arg(fence_floor)
            .arg(if candidate { "1" } else { "0" })
            .invoke_async(&mut self.conn)
            .await?;
        Ok(Beat {
            was_registered: was == 1,
            lease: Lease::parse(&lease),
            ready: Lease::parse(&ready),
        })
    }

    /// Announces that the owner holding `lease` serves. `false`: it no longer holds it.
    pub async fn mark_ready(&mut self, lease: &Lease) -> Result<bool, RedisError> {
        let done: i64 = self
            .ready
            .key(self.key("lease"))
            .key(self.key("ready"))
            .arg(lease.value())
            .arg(self.expiry_ms())
            .invoke_async(&mut self.conn)
            .await?;
        Ok(done == 1)
    }

    pub async fn release(&mut self, lease: &Lease) -> Result<(), RedisError> {
        let _: i64 = self
            .release
            .key(self.key("lease"))
            .key(self.key("ready"))
            .arg(lease.value())
            .invoke_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Deregisters this node at a clean stop (the others need not wait for expiry).
    pub async fn leave(&mut self) -> Result<(), RedisError> {
        let key = self.key(&format!("node:{}", self.node));
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// A handle for publishing on nodes' channels (shares the connection).
    pub fn publisher(&self) -> Publisher {
        Publisher {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// Which of `nodes` are registered (not expired).
    pub async fn alive(&mut self, nodes: &[String]) -> Result<Vec<bool>, RedisError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.exists(self.key(&format!("node:{node}")));
        }
        pipe.query_async(&mut self.conn).await
    }

    /// Every registered node and its listen address.
    pub async fn nodes(&mut self) -> Result<Vec<(String, String)>, RedisError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("nodes"))
            .query_async(&mut self.conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("node:{id}")))
            .collect();
        let listens: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, listen) in ids.into_iter().zip(listens) {
            match listen {
                Some(listen) => out.push((id, listen)),
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            // Node ids are new at every start: forget the dead ones.
            let _: i64 = redis::cmd("SREM")
                .arg(self.key("nodes"))
                .arg(&expired)
                .query_async(&mut self.conn)
                .await?;
        }
        out.sort();
        Ok(out)
    }
}

#[derive(Clone)]
pub struct Publisher {
    conn: MultiplexedConnection,
    prefix: String,
}

impl Publisher {
    /// Publishes a batch on `node`'s channel; how many subscribers got it (0: that
    /// node is not listening).
    pub async fn publish(&mut self, node: &str, batch: &[u8]) -> Result<usize, RedisError> {
        redis::cmd("PUBLISH")
            .arg(format!("{}:to:{node}", self.prefix))
            .arg(batch)
            .query_async(&mut self.conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::Lease;

    #[test]
    fn a_lease_value_names_its_node_and_fence() {
        let lease = Lease::parse("abc 42").unwrap();
        assert_eq!(lease.node, "abc");
        assert_eq!(lease.fence, 42);
        assert_eq!(lease.value(), "abc 42");
        assert!(Lease::parse("").is_none());
        assert!(Lease::parse("abc").is_none());
        assert!(Lease::parse("abc x").is_none());
    }
}
