//! What the abuse limits cost on the hot path: one check of a frame against its
//! customer's shared budget (the keyed GCRA every text frame goes through), allowed
//! and refused, over many customers.
//!
//!   cargo bench --bench limits

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use warmline::config::RateLimitsConfig;
use warmline::gateway::limits::{Limits, Principal};

fn per_check(label: &str, config: &RateLimitsConfig, customers: usize, checks: usize) {
    let limits = Arc::new(Limits::new(config));
    let mut connections = Vec::with_capacity(customers);
    for i in 0..customers {
        let place = limits
            .open(Principal::Customer(format!("customer-{i:08}").into()))
            .expect("a place");
        let mut frames = limits.frames("customer").expect("customers are limited");
        frames.share(&place);
        connections.push((place, frames));
    }
    let mut allowed = 0usize;
    let started = Instant::now();
    for n in 0..checks {
        let (_, frames) = &connections[n % customers];
        allowed += usize::from(black_box(limits.frame(frames)).is_ok());
    }
    let ns = started.elapsed().as_nanos() as f64 / checks as f64;
    println!(
        "{label:<40} {customers:>6} customers: {ns:>7.1} ns per frame check ({allowed} of {checks} allowed)"
    );
}

fn main() {
    let open = RateLimitsConfig {
        customer_frames_per_minute: 1_000_000_000,
        customer_frame_burst: 1_000_000_000,
        ..RateLimitsConfig::default()
    };
    let tight = RateLimitsConfig {
        customer_frames_per_minute: 1,
        customer_frame_burst: 1,
        ..RateLimitsConfig::default()
    };
    for customers in [1, 1_000, 20_000] {
        per_check("allowed (within the budget)", &open, customers, 2_000_000);
        per_check("refused (over the budget)", &tight, customers, 2_000_000);
    }
}
