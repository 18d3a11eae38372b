//! What an arrival costs as the waiting line grows: conversations start in a queue
//! whose agents are all away, so each one waits; the time per arrival is measured
//! at several line lengths.
//!
//!   cargo bench --bench arrivals

use std::time::Instant;

use warmline::core::{
    AgentSettings, Channel, ConnId, CoreSettings, CustomerHistory, Input, QueueSettings,
    StartRequest, Switchboard,
};

fn main() {
    let settings = CoreSettings {
        queues: vec![QueueSettings::named("support")],
        agents: (0..100)
            .map(|i| AgentSettings {
                id: format!("a{i}").into(),
                display_name: format!("A{i}").into(),
                skills: Default::default(),
                languages: Vec::new(),
                capacity_chat: 3,
                capacity_voice: 0,
            })
            .collect(),
        agent_grace_ms: 60_000,
        max_missed_offers: 3,
        reoffer_delay_ms: 30_000,
        queued_update_interval_ms: 5_000,
        dedupe_window: 16,
        voice_excludes_chat: true,
    };
    let mut sb = Switchboard::new(settings, 1);
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut now = 1_000_000u64;
    for target in [1_000u64, 5_000, 10_000, 20_000] {
        let batch = 500;
        while n < target - batch {
            n += 1;
            now += 10;
            sb.handle(start(n), now, &mut out);
            out.clear();
        }
        let t = Instant::now();
        for _ in 0..batch {
            n += 1;
            now += 10;
            sb.handle(start(n), now, &mut out);
            out.clear();
        }
        let per = t.elapsed() / batch as u32;
        println!("arrivals with {target:>6} waiting: {per:?} per arrival");
    }

    // An assignment with 20,000 waiting: an agent becomes available, is offered the
    // first in line (everyone behind moves up one), and goes away again (the offer
    // is withdrawn and the conversation goes back to its place).
    let agent_id: warmline::core::Id = "a0".into();
    sb.handle(
        Input::AgentConnected {
            conn: ConnId(0),
            agent_id: agent_id.clone(),
        },
        now,
        &mut out,
    );
    out.clear();
    let rounds = 50;
    let t = Instant::now();
    for _ in 0..rounds {
        now += 10;
        sb.handle(
            Input::SetStatus {
                conn: ConnId(0),
                req: None,
                agent_id: agent_id.clone(),
                available: true,
            },
            now,
            &mut out,
        );
        now += 10;
        sb.handle(
            Input::SetStatus {
                conn: ConnId(0),
                req: None,
                agent_id: agent_id.clone(),
                available: false,
            },
            now,
            &mut out,
        );
        out.clear();
    }
    let per = t.elapsed() / rounds;
    println!(
        "an offer and its withdrawal with {} waiting: {per:?}",
        sb.waiting_len()
    );
}

fn start(n: u64) -> Input {
    let id: warmline::core::Id = format!("c{n}").into();
    Input::Start(Box::new(StartRequest {
        conn: ConnId(n),
        req: None,
        customer_id: id.clone(),
        customer_name: id.clone(),
        history: CustomerHistory::default(),
        conversation_id: id,
        queue: "support".into(),
        channel: Channel::Chat,
        language: None,
        skills: Default::default(),
        attributes: "{}".into(),
        text: None,
    }))
}
