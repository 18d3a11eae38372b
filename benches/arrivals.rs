//! What an arrival costs as the waiting line grows: conversations start in a queue
//! whose agents are all away, so each one waits; the time per arrival is measured
//! at several line lengths.
//!
//!   cargo bench --bench arrivals

use std::time::Instant;

use warmline::core::{
    AgentSettings, Channel, ConnId, CoreSettings, CustomerHistory, Input, QueueSettings, Skills,
    StartRequest, Switchboard,
};

fn main() {
    let mut billing = QueueSettings::named("billing");
    billing.skills = Skills::from_iter([("billing".into(), 1)]);
    let mut agents: Vec<AgentSettings> = (0..100)
        .map(|i| AgentSettings {
            id: format!("a{i}").into(),
            display_name: format!("A{i}").into(),
            skills: Default::default(),
            languages: Vec::new(),
            capacity_chat: 3,
            capacity_voice: 0,
        })
        .collect();
    agents.push(AgentSettings {
        id: "b0".into(),
        display_name: "B0".into(),
        skills: Skills::from_iter([("billing".into(), 5)]),
        languages: Vec::new(),
        capacity_chat: 3,
        capacity_voice: 0,
    });
    let mut support = QueueSettings::named("support");
    support.skills = Skills::from_iter([("support".into(), 1)]);
    for a in agents.iter_mut().take(100) {
        a.skills = Skills::from_iter([("support".into(), 5)]);
    }
    let settings = CoreSettings {
        queues: vec![support, billing],
        agents,
        agent_grace_ms: 60_000,
        max_missed_offers: 3,
        reoffer_delay_ms: 30_000,
        queued_update_interval_ms: 5_000,
        dedupe_window: 16,
        voice_excludes_chat: true,
        coaching: Default::default(),
        prefer_satisfied: false,
    };
    let mut sb = Switchboard::new(settings, 1);
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut now = 1_000_000u64;
    for target in [1_000u64, 10_000, 100_000] {
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

    // An assignment with 100,000 waiting: an agent becomes available, is offered the
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
    // The first departure sweeps every place at once (the line had not moved before);
    // later ones within the update interval wait for the next sweep, timed below.
    let rounds = 50;
    let mut t = Instant::now();
    for round in 0..=rounds {
        if round == 1 {
            t = Instant::now();
        }
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

    // The sweep of places that follows, once per update interval: everyone behind the
    // first moved (there and back), so each is looked at; none needs a frame.
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
    out.clear();
    now += 5_000;
    let t = Instant::now();
    sb.handle(Input::Tick, now, &mut out);
    println!(
        "a sweep of places with {} waiting: {:?} ({} `queued` frames)",
        sb.waiting_len(),
        t.elapsed(),
        out.len()
    );
    out.clear();
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

    // Arrivals while an agent is idle who qualifies for none of those waiting (a
    // `billing` specialist while the line is all `support`): each routing pass must
    // not cost a look at every waiting conversation.
    let specialist: warmline::core::Id = "b0".into();
    sb.handle(
        Input::AgentConnected {
            conn: ConnId(1),
            agent_id: specialist.clone(),
        },
        now,
        &mut out,
    );
    sb.handle(
        Input::SetStatus {
            conn: ConnId(1),
            req: None,
            agent_id: specialist,
            available: true,
        },
        now,
        &mut out,
    );
    out.clear();
    let t = Instant::now();
    let batch = 200;
    for _ in 0..batch {
        n += 1;
        now += 10;
        sb.handle(start(n), now, &mut out);
        out.clear();
    }
    let per = t.elapsed() / batch;
    println!(
        "arrivals with {} waiting and an idle agent who qualifies for none: {per:?} per arrival",
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
        context: Vec::new(),
        repeat_of: None,
        text: None,
    }))
}
