//! Abuse limits: new connections per client address, open connections per customer
//! and per agent, frames per connection, `start`s per customer. Every refusal says
//! when to try again; a connection that keeps going over its frame rate is closed
//! (1008). Operators revoke an agent here too: every socket of that agent closes at
//! once, and tokens issued before the revocation are refused from then on.
//!
//! Rates are GCRA (`governor`): a sustained rate and a burst. Keyed state is pruned
//! every minute, so an address or customer seen once costs nothing afterwards.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::config::RateLimitsConfig;
use crate::core::Id;

/// How long to wait before trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole milliseconds, at least 1 (a hint of 0 would invite a busy loop).
    pub fn ms(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Whole seconds, rounded up, for an HTTP `Retry-After` header.
    pub fn secs(self) -> u64 {
        self.ms().div_ceil(1000)
    }
}

/// Whose open connections are counted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    Customer(Id),
    Agent(Id),
}

struct Held {
    open: u32,
    /// Tells this entry from a later one for the same principal (after a revocation).
    generation: u64,
    /// Cancelled when the principal is revoked: every session holding it closes.
    revoked: CancellationToken,
}

/// A counted open connection; dropping it frees the place.
pub struct Place {
    limits: Arc<Limits>,
    principal: Principal,
    generation: u64,
    pub revoked: CancellationToken,
}

impl Place {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.principal)
            && held.generation == self.generation
        {
            held.open = held.open.saturating_sub(1);
            if held.open == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

/// The limits of one gateway process (several nodes: each node keeps its own).
pub struct Limits {
    config: RateLimitsConfig,
    clock: DefaultClock,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    starts: Option<DefaultKeyedRateLimiter<Id>>,
    customer_frames: Option<Quota>,
    agent_frames: Option<Quota>,
    /// Frames per customer and per agent, all their connections together (a
    /// reconnect does not refill the budget).
    customer_budget: Option<DefaultKeyedRateLimiter<Id>>,
    agent_budget: Option<DefaultKeyedRateLimiter<Id>>,
    trusted_proxies: Vec<IpAddr>,
    open: Mutex<HashMap<Principal, Held>>,
    generations: AtomicU64,
    /// New connections checked (pruning every so many).
    checks: AtomicU64,
    /// Agent -> tokens issued at or before this second are refused.
    revoked: RwLock<HashMap<Id, u64>>,
    /// Who was closed for abuse and is refused until when.
    cooling: Mutex<Cooling>,
    /// One audit line a minute per address for refused connections (all are counted).
    address_audits: DefaultKeyedRateLimiter<IpAddr>,
}

/// Customers, agents and addresses cooling off after abuse closes.
#[derive(Default)]
struct Cooling {
    principals: HashMap<Principal, Instant>,
    addresses: HashMap<IpAddr, AddressAbuse>,
}

/// An address's recent abuse closes, and the end of its cooldown once it has one.
struct AddressAbuse {
    closes: u32,
    since: Instant,
    until: Option<Instant>,
}

/// A sustained rate of `count` per `period` with a burst of `burst` (0: no limit).
fn quota(count: u32, period: Duration, burst: u32) -> Option<Quota> {
    let count = NonZeroU32::new(count)?;
    let every = period / count.get();
    let quota = Quota::with_period(every.max(Duration::from_nanos(1)))?;
    Some(quota.allow_burst(NonZeroU32::new(burst).unwrap_or(count)))
}

impl Limits {
    pub fn new(config: &RateLimitsConfig) -> Limits {
        let minute = Duration::from_secs(60);
        let customer_frames = quota(
            config.customer_frames_per_minute,
            minute,
            config.customer_frame_burst,
        );
        let agent_frames = quota(
            config.agent_frames_per_minute,
            minute,
            config.agent_frame_burst,
        );
        Limits {
            clock: DefaultClock::default(),
            per_ip: quota(
                config.connections_per_ip_per_second,
                Duration::from_secs(1),
                config.connections_per_ip_burst,
            )
            .map(RateLimiter::keyed),
            starts: quota(
                config.starts_per_customer_per_hour,
                Duration::from_secs(3600),
                config.starts_per_customer_per_hour,
            )
            .map(RateLimiter::keyed),
            customer_frames,
            agent_frames,
            customer_budget: customer_frames.map(RateLimiter::keyed),
            agent_budget: agent_frames.map(RateLimiter::keyed),
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            config: config.clone(),
            open: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            revoked: RwLock::new(HashMap::new()),
            cooling: Mutex::new(Cooling::default()),
            address_audits: RateLimiter::keyed(Quota::per_minute(NonZeroU32::MIN)),
        }
    }

    fn cooldown(&self) -> Option<Duration> {
        match self.config.cooldown_seconds {
            0 => None,
            s => Some(Duration::from_secs(u64::from(s))),
        }
    }

    /// A connection of `principal` (when known) from `ip` was closed for abuse, or a
    /// cooling-off customer came back anyway: the principal cools off, and the
    /// address counts one more close.
    pub fn abused(&self, principal: Option<&Principal>, ip: Option<IpAddr>) {
        let Some(cooldown) = self.cooldown() else {
            return;
        };
        let now = Instant::now();
        let mut cooling = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = principal {
            let until = cooling.principals.entry(p.clone()).or_insert(now);
            *until = (*until).max(now + cooldown);
        }
        let allowed = self.config.abuse_closes_per_ip;
        if let Some(ip) = ip
            && allowed != 0
        {
            let abuse = cooling.addresses.entry(ip).or_insert(AddressAbuse {
                closes: 0,
                since: now,
                until: None,
            });
            if now.duration_since(abuse.since) > cooldown {
                abuse.closes = 0;
                abuse.since = now;
            }
            abuse.closes += 1;
            if abuse.closes >= allowed {
                abuse.until = Some(now + cooldown);
            }
        }
    }

    /// `Err(wait)` while `principal` is cooling off after an abuse close.
    pub fn cooling(&self, principal: &Principal) -> Result<(), RetryAfter> {
        let cooling = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        match cooling.principals.get(principal) {
            Some(&until) => left(until),
            None => Ok(()),
        }
    }

    /// `Err(wait)` while customer connections from `ip` are refused after repeated
    /// abuse closes.
    pub fn address_cooling(&self, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        let Some(ip) = ip else {
            return Ok(());
        };
        let cooling = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        match cooling.addresses.get(&ip).and_then(|a| a.until) {
            Some(until) => left(until),
            None => Ok(()),
        }
    }

    pub fn config(&self) -> &RateLimitsConfig {
        &self.config
    }

    fn wait(&self, not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> RetryAfter {
        RetryAfter(not_until.wait_time_from(self.clock.now()))
    }

    /// The client's address: the peer's, or (when the peer is a trusted proxy) the
    /// last address in `X-Forwarded-For` that is not a trusted proxy.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !self.trusted_proxies.contains(ip))
                .unwrap_or(peer),
        )
    }

    /// A new connection from `ip` (customers and agents; the telephony provider is
    /// authenticated by its token and not limited by address).
    pub fn connection_from(&self, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        // Wherever no timer prunes (an edge node), every 4,096th check does.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.prune();
        }
        match (&self.per_ip, ip) {
            (Some(limiter), Some(ip)) => limiter.check_key(&ip).map_err(|n| self.wait(&n)),
            _ => Ok(()),
        }
    }

    /// Whether a refused connection from `ip` gets an audit line: the first of each
    /// minute does; the rest are only counted, so a connection flood cannot turn into
    /// a log flood.
    pub fn audit_address(&self, ip: Option<IpAddr>) -> bool {
        ip.is_none_or(|ip| self.address_audits.check_key(&ip).is_ok())
    }

    /// A `start` by `customer`.
    pub fn start_by(&self, customer: &Id) -> Result<(), RetryAfter> {
        match &self.starts {
            Some(limiter) => limiter.check_key(customer).map_err(|n| self.wait(&n)),
            None => Ok(()),
        }
    }

    /// The frame limiter of a new connection (`None`: not limited).
    pub fn frames(&self, role: &str) -> Option<FrameLimiter> {
        let quota = match role {
            "customer" => self.customer_frames?,
            "agent" => self.agent_frames?,
            _ => return None,
        };
        Some(FrameLimiter {
            limiter: RateLimiter::direct(quota),
            principal: None,
        })
    }

    /// Takes one of `principal`'s connection places. `Err(limit)`: all are taken.
    pub fn open(self: &Arc<Self>, principal: Principal) -> Result<Place, u32> {
        let limit = match principal {
            Principal::Customer(_) => self.config.connections_per_customer,
            Principal::Agent(_) => self.config.connections_per_agent,
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(principal.clone()).or_insert_with(|| Held {
            open: 0,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            revoked: CancellationToken::new(),
        });
        if limit != 0 && held.open >= limit {
            return Err(limit);
        }
        held.open += 1;
        let revoked = held.revoked.clone();
        let generation = held.generation;
        drop(open);
        Ok(Place {
            limits: self.clone(),
            principal,
            generation,
            revoked,
        })
    }

    /// Revokes `agent`: tokens issued at or before `at_secs` are refused from now on,
    /// and every open socket of the agent closes. Returns how many were open.
    pub fn revoke(&self, agent: &Id, at_secs: u64) -> u32 {
        self.remember_revocation(agent.clone(), at_secs);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.remove(&Principal::Agent(agent.clone())) {
            Some(held) => {
                held.revoked.cancel();
                held.open
            }
            None => 0,
        }
    }

    /// A revocation read back from the store at start.
    pub fn remember_revocation(&self, agent: Id, at_secs: u64) {
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        let entry = revoked.entry(agent).or_insert(at_secs);
        *entry = (*entry).max(at_secs);
    }

    /// Whether a token of `agent` issued at `issued_at` (seconds) was revoked.
    pub fn is_revoked(&self, agent: &str, issued_at: u64) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(agent)
            .is_some_and(|&before| issued_at <= before)
    }

    /// Forgets rate state that has fully recovered (run every minute).
    pub fn prune(&self) {
        if let Some(cooldown) = self.cooldown() {
            let now = Instant::now();
            let mut cooling = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
            cooling.principals.retain(|_, until| *until > now);
            cooling.addresses.retain(|_, a| {
                a.until.is_some_and(|until| until > now) || now.duration_since(a.since) <= cooldown
            });
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        self.address_audits.retain_recent();
        self.address_audits.shrink_to_fit();
        for l in [&self.starts, &self.customer_budget, &self.agent_budget]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// The frame limiter's answer turned into a retry hint.
    pub fn frame(&self, limiter: &FrameLimiter) -> Result<(), RetryAfter> {
        let shared = match &limiter.principal {
            Some(Principal::Customer(id)) => self.customer_budget.as_ref().zip(Some(id)),
            Some(Principal::Agent(id)) => self.agent_budget.as_ref().zip(Some(id)),
            None => None,
        };
        match shared {
            Some((budget, id)) => budget.check_key(id),
            None => limiter.limiter.check(),
        }
        .map_err(|n| self.wait(&n))
    }
}

/// The time left until `until`; `Ok` once it has passed.
fn left(until: Instant) -> Result<(), RetryAfter> {
    match until.checked_duration_since(Instant::now()) {
        Some(wait) if !wait.is_zero() => Err(RetryAfter(wait)),
        _ => Ok(()),
    }
}

/// A connection's frame rate: its own until it is known whose it is (a customer's
/// `hello`, an agent's token), then the budget all connections of that customer or
/// agent share, so that reconnecting does not refill it.
pub struct FrameLimiter {
    limiter: DefaultDirectRateLimiter,
    principal: Option<Principal>,
}

impl FrameLimiter {
    /// From now on this connection's frames count against `place`'s owner's budget.
    pub fn share(&mut self, place: &Place) {
        self.principal = Some(place.principal.clone());
    }
}

/// Over-limit frames a connection sent within the last minute; past the configured
/// number it is closed with 1008.
#[derive(Default)]
pub struct Strikes {
    count: u32,
    since: Option<Instant>,
}

impl Strikes {
    /// Whether the next strike starts a new minute (the first of its minute).
    pub fn is_fresh(&self) -> bool {
        self.since
            .is_none_or(|since| since.elapsed() > Duration::from_secs(60))
    }

    /// Counts one more; `true` when the connection should now be closed.
    pub fn strike(&mut self, allowed: u32) -> bool {
        let now = Instant::now();
        match self.since {
            Some(since) if now.duration_since(since) <= Duration::from_secs(60) => {}
            _ => {
                self.since = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        allowed != 0 && self.count > allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateLimitsConfig {
        RateLimitsConfig::default()
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_with_a_retry_hint() {
        let limits = Limits::new(&RateLimitsConfig {
            customer_frames_per_minute: 100,
            customer_frame_burst: 20,
            ..config()
        });
        let frames = limits.frames("customer").expect("customers are limited");
        for _ in 0..20 {
            assert_eq!(limits.frame(&frames), Ok(()));
        }
        let retry = limits
            .frame(&frames)
            .expect_err("the 21st frame at once is over");
        // 100 per minute: one frame every 600 ms.
        assert!(retry.ms() > 0 && retry.ms() <= 600, "{retry:?}");
        assert!(
            limits.frames("media").is_none(),
            "media streams are not limited"
        );
    }

    #[test]
    fn a_reconnect_does_not_refill_the_frame_budget() {
        let limits = Arc::new(Limits::new(&RateLimitsConfig {
            customer_frames_per_minute: 100,
            customer_frame_burst: 20,
            ..config()
        }));
        let customer: Id = "c1".into();
        let first_place = limits.open(Principal::Customer(customer.clone())).unwrap();
        let mut first = limits.frames("customer").unwrap();
        first.share(&first_place);
        for _ in 0..20 {
            assert_eq!(limits.frame(&first), Ok(()));
        }
        assert!(limits.frame(&first).is_err());
        drop(first_place);
        // The same customer again: a fresh connection's frame before `hello` passes,
        // but once it is theirs the burst is still spent.
        let mut again = limits.frames("customer").unwrap();
        assert_eq!(limits.frame(&again), Ok(()));
        let place = limits.open(Principal::Customer(customer)).unwrap();
        again.share(&place);
        assert!(
            limits.frame(&again).is_err(),
            "reconnecting refilled the burst"
        );
        // Another customer has a budget of their own.
        let other_place = limits.open(Principal::Customer("c2".into())).unwrap();
        let mut other = limits.frames("customer").unwrap();
        other.share(&other_place);
        assert_eq!(limits.frame(&other), Ok(()));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = Arc::new(Limits::new(&RateLimitsConfig {
            customer_frames_per_minute: 0,
            connections_per_ip_per_second: 0,
            starts_per_customer_per_hour: 0,
            connections_per_customer: 0,
            ..config()
        }));
        assert!(limits.frames("customer").is_none());
        let ip = Some("192.0.2.1".parse().unwrap());
        let customer: Id = "c1".into();
        for _ in 0..10_000 {
            assert!(limits.connection_from(ip).is_ok());
            assert!(limits.start_by(&customer).is_ok());
        }
        let places: Vec<_> = (0..100)
            .map(|_| limits.open(Principal::Customer(customer.clone())).unwrap())
            .collect();
        assert_eq!(places.len(), 100);
    }

    #[test]
    fn an_abuse_close_cools_off_its_customer_or_agent_with_a_retry_hint() {
        let limits = Limits::new(&config());
        let flooder = Principal::Customer("c1".into());
        let other = Principal::Customer("c2".into());
        assert_eq!(limits.cooling(&flooder), Ok(()));
        limits.abused(Some(&flooder), None);
        let retry = limits.cooling(&flooder).expect_err("cooling off");
        assert!(
            (59_000..=60_000).contains(&retry.ms()),
            "the default cooldown is a minute: {retry:?}"
        );
        assert_eq!(limits.cooling(&other), Ok(()), "only the one who abused");
        // A later close restarts the cooldown; pruning keeps what has not ended.
        limits.abused(Some(&flooder), None);
        limits.prune();
        assert!(limits.cooling(&flooder).is_err());
    }

    #[test]
    fn the_third_abuse_close_from_an_address_shuts_it_out_for_the_cooldown() {
        let limits = Limits::new(&config());
        let ip = Some("192.0.2.1".parse().unwrap());
        let elsewhere = Some("192.0.2.2".parse().unwrap());
        limits.abused(None, ip);
        limits.abused(None, ip);
        assert_eq!(limits.address_cooling(ip), Ok(()), "two are tolerated");
        limits.abused(None, ip);
        let retry = limits.address_cooling(ip).expect_err("shut out");
        assert!((59_000..=60_000).contains(&retry.ms()), "{retry:?}");
        assert_eq!(limits.address_cooling(elsewhere), Ok(()));
        assert_eq!(limits.address_cooling(None), Ok(()));
    }

    #[test]
    fn a_cooldown_of_zero_turns_cooling_off_off() {
        let limits = Limits::new(&RateLimitsConfig {
            cooldown_seconds: 0,
            ..config()
        });
        let ip = Some("192.0.2.1".parse().unwrap());
        let flooder = Principal::Customer("c1".into());
        for _ in 0..10 {
            limits.abused(Some(&flooder), ip);
        }
        assert_eq!(limits.cooling(&flooder), Ok(()));
        assert_eq!(limits.address_cooling(ip), Ok(()));
        let by_address_only = Limits::new(&RateLimitsConfig {
            abuse_closes_per_ip: 0,
            ..config()
        });
        for _ in 0..10 {
            by_address_only.abused(Some(&flooder), ip);
        }
        assert!(by_address_only.cooling(&flooder).is_err());
        assert_eq!(by_address_only.address_cooling(ip), Ok(()));
    }

    #[test]
    fn connection_places_are_counted_and_given_back() {
        let limits = Arc::new(Limits::new(&RateLimitsConfig {
            connections_per_agent: 2,
            ..config()
        }));
        let alice = Principal::Agent("alice".into());
        let a = limits.open(alice.clone()).unwrap();
        let _b = limits.open(alice.clone()).unwrap();
        assert_eq!(limits.open(alice.clone()).err(), Some(2));
        assert!(limits.open(Principal::Agent("bob".into())).is_ok());
        drop(a);
        assert!(
            limits.open(alice).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn revoking_an_agent_cancels_their_sockets_and_refuses_older_tokens() {
        let limits = Arc::new(Limits::new(&RateLimitsConfig {
            connections_per_agent: 2,
            ..config()
        }));
        let alice: Id = "alice".into();
        let one = limits.open(Principal::Agent(alice.clone())).unwrap();
        let two = limits.open(Principal::Agent(alice.clone())).unwrap();
        let bob = limits.open(Principal::Agent("bob".into())).unwrap();
        assert_eq!(limits.revoke(&alice, 1_000), 2);
        assert!(one.revoked.is_cancelled() && two.revoked.is_cancelled());
        assert!(!bob.revoked.is_cancelled());
        assert!(limits.is_revoked("alice", 999));
        assert!(limits.is_revoked("alice", 1_000));
        assert!(
            !limits.is_revoked("alice", 1_001),
            "a token minted later works"
        );
        assert!(!limits.is_revoked("bob", 1));
        // The revoked places' drops must not disturb a new connection's count.
        let three = limits.open(Principal::Agent(alice.clone())).unwrap();
        drop(one);
        drop(two);
        assert!(!three.revoked.is_cancelled());
        let _four = limits.open(Principal::Agent(alice.clone())).unwrap();
        assert_eq!(
            limits.open(Principal::Agent(alice)).err(),
            Some(2),
            "the revoked connections' places were not given back twice"
        );
    }

    #[test]
    fn per_address_limits_and_trusted_proxies() {
        let limits = Limits::new(&RateLimitsConfig {
            connections_per_ip_per_second: 1,
            connections_per_ip_burst: 2,
            trusted_proxies: vec!["10.0.0.1".into()],
            ..config()
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let direct: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        // A peer that is not a trusted proxy cannot pick its address.
        assert_eq!(limits.client_ip(Some(direct), &headers), Some(direct.ip()));
        let behind = limits.client_ip(Some(proxy), &headers);
        assert_eq!(behind, Some("203.0.113.9".parse().unwrap()));
        assert!(limits.connection_from(behind).is_ok());
        assert!(limits.connection_from(behind).is_ok());
        let retry = limits.connection_from(behind).unwrap_err();
        assert!(retry.secs() >= 1);
        assert!(
            limits.connection_from(Some(direct.ip())).is_ok(),
            "another address has its own budget"
        );
    }

    #[test]
    fn strikes_close_after_the_allowed_number_in_a_minute() {
        let mut strikes = Strikes::default();
        for _ in 0..3 {
            assert!(!strikes.strike(3));
        }
        assert!(strikes.strike(3));
    }
}
