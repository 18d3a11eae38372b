//! How good is the `queued` estimate? A simulated day of arrivals through the real
//! switchboard (pure core, simulated clock): each customer's first estimate is
//! compared with the wait they actually had.
//!
//!   cargo bench --bench eta_accuracy
//!
//! The day: 10 hours, 20 agents (one chat each, accept at once), handle times
//! exponential with a 5-minute mean, arrivals Poisson with a rate that rises to a
//! midday peak above capacity and falls again. Figures go in docs/benchmarks.md.

use std::collections::HashMap;

use warmline::core::{
    AgentSettings, Channel, ConnId, CoreSettings, CustomerHistory, Effect, Id, Input, Notice,
    Participant, QueueSettings, Resolution, StartRequest, Switchboard,
};

const AGENTS: usize = 20;
const DAY_MS: u64 = 10 * 3600 * 1000;
const MEAN_HANDLE_MS: f64 = 300_000.0;

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64).max(1e-12)
    }
    fn exp(&mut self, mean: f64) -> u64 {
        (-mean * self.unit().ln()) as u64
    }
}

/// Arrivals per ms at time t: from 60% to 115% of capacity and back.
fn rate(t: u64) -> f64 {
    let capacity = AGENTS as f64 / MEAN_HANDLE_MS;
    let phase = t as f64 / DAY_MS as f64 * std::f64::consts::PI;
    capacity * (0.6 + 0.55 * phase.sin())
}

fn main() {
    let settings = CoreSettings {
        queues: vec![QueueSettings {
            wrap_up_ms: 0,
            ..QueueSettings::named("support")
        }],
        agents: (0..AGENTS)
            .map(|i| AgentSettings {
                id: format!("a{i}").into(),
                display_name: format!("A{i}").into(),
                skills: Default::default(),
                languages: Vec::new(),
                capacity_chat: 1,
                capacity_voice: 0,
            })
            .collect(),
        agent_grace_ms: 60_000,
        max_missed_offers: 0,
        reoffer_delay_ms: 30_000,
        queued_update_interval_ms: 5_000,
        dedupe_window: 16,
        voice_excludes_chat: true,
        coaching: Default::default(),
        prefer_satisfied: false,
    };
    let mut sb = Switchboard::new(settings, 1);
    let mut rng = Rng(42);
    let mut out = Vec::new();
    let mut now = 0u64;
    for i in 0..AGENTS {
        let agent_id: Id = format!("a{i}").into();
        let conn = ConnId(i as u64);
        sb.handle(
            Input::AgentConnected {
                conn,
                agent_id: agent_id.clone(),
            },
            now,
            &mut out,
        );
        sb.handle(
            Input::SetStatus {
                conn,
                req: None,
                agent_id,
                available: true,
            },
            now,
            &mut out,
        );
    }
    out.clear();

    let mut arrivals: HashMap<Id, u64> = HashMap::new();
    let mut first_eta: HashMap<Id, Option<u32>> = HashMap::new();
    let mut closes: Vec<(u64, Id, Id)> = Vec::new(); // (at, agent, conversation)
    let mut errors = Vec::new();
    let mut waits = Vec::new();
    let mut next_arrival = rng.exp(1.0 / rate(0));
    let mut n = 0u64;
    loop {
        let next_close = closes.iter().map(|c| c.0).min();
        let next = [
            Some(next_arrival).filter(|t| *t < DAY_MS),
            next_close,
            sb.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = next;
        if next_arrival == now && now < DAY_MS {
            n += 1;
            let id: Id = format!("c{n}").into();
            arrivals.insert(id.clone(), now);
            sb.handle(
                Input::Start(Box::new(StartRequest {
                    conn: ConnId(1_000_000 + n),
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
                })),
                now,
                &mut out,
            );
            next_arrival = now + rng.exp(1.0 / rate(now)).max(1);
        }
        while let Some(i) = closes.iter().position(|c| c.0 <= now) {
            let (_, agent_id, conversation_id) = closes.swap_remove(i);
            sb.handle(
                Input::Close {
                    conn: ConnId(0),
                    req: None,
                    agent_id,
                    conversation_id,
                    resolution: Resolution::Resolved,
                    note: None,
                    follow_up_at: None,
                },
                now,
                &mut out,
            );
        }
        sb.handle(Input::Tick, now, &mut out);
        // Agents accept every offer at once; the customer's wait ends there.
        let mut offers = Vec::new();
        for effect in out.drain(..) {
            if let Effect::Notify { to, notice } = effect {
                match (to, notice) {
                    (
                        _,
                        Notice::Queued {
                            conversation_id,
                            eta_seconds,
                            ..
                        },
                    ) => {
                        first_eta.entry(conversation_id).or_insert(eta_seconds);
                    }
                    (Participant::Agent(agent_id), Notice::Offer(offer)) => {
                        offers.push((
                            agent_id,
                            offer.offer_id.clone(),
                            offer.conversation_id.clone(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        for (agent_id, offer_id, conversation_id) in offers {
            sb.handle(
                Input::Accept {
                    conn: ConnId(0),
                    req: None,
                    agent_id: agent_id.clone(),
                    offer_id,
                },
                now,
                &mut out,
            );
            let waited = now - arrivals[&conversation_id];
            waits.push(waited);
            if let Some(Some(eta)) = first_eta.get(&conversation_id) {
                errors.push((f64::from(*eta) - waited as f64 / 1000.0).abs());
            }
            closes.push((
                now + rng.exp(MEAN_HANDLE_MS).max(1_000),
                agent_id,
                conversation_id,
            ));
        }
        out.clear();
        if now >= DAY_MS && closes.is_empty() && sb.waiting_len() == 0 {
            break;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let waits_s: Vec<f64> = waits.iter().map(|w| *w as f64 / 1000.0).collect();
    let waited: Vec<f64> = waits_s.iter().copied().filter(|w| *w > 0.0).collect();
    println!(
        "eta accuracy over a simulated day: {} conversations, {} waited; mean wait {:.0} s (of those who waited {:.0} s); estimate mean absolute error {:.0} s over {} estimates",
        waits.len(),
        waited.len(),
        mean(&waits_s),
        mean(&waited),
        mean(&errors),
        errors.len()
    );
}
