//! Routing decisions: how fast the pure selection picks an agent for one waiting
//! conversation among 10,000 agents with 50 skills.
//!
//!   cargo bench --bench routing
//!
//! A decision here is one call of `routing::pick`: filter the candidates (online,
//! available, room on the channel, language, skills at the current step) and choose
//! by the queue's strategy. Figures go in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warmline::core::pools::{ClassKey, Pools};
use warmline::core::routing::{AgentSlot, Need, Strategy, pick};
use warmline::core::{AgentState, Channel, Id, Skills};

const AGENTS: usize = 10_000;
const SKILLS: usize = 50;

/// A small deterministic generator (no dependency, same world every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn world() -> Vec<AgentSlot> {
    let mut rng = Lcg(7);
    (0..AGENTS)
        .map(|i| {
            let skills: Skills = (0..5)
                .map(|_| {
                    (
                        format!("s{}", rng.next(SKILLS as u64)),
                        1 + rng.next(10) as u8,
                    )
                })
                .collect();
            AgentSlot {
                id: Id::from(format!("agent-{i:05}")),
                skills,
                languages: vec![Id::from(if i % 3 == 0 { "es" } else { "en" })],
                capacity: [3, 1],
                load: [rng.next(4) as u32, 0],
                state: if rng.next(10) < 8 {
                    AgentState::Available
                } else {
                    AgentState::Away
                },
                online: true,
                idle_since: rng.next(1_000_000),
                ratings: Vec::new(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let agents = world();
    let one: Skills = [("s7".to_owned(), 3)].into();
    let two: Skills = [("s7".to_owned(), 3), ("s21".to_owned(), 2)].into();
    let none = Skills::new();
    let mut group = c.benchmark_group("routing_decision_10k_agents_50_skills");
    group.throughput(Throughput::Elements(1));
    for (name, need_skills, strategy) in [
        ("one_skill_longest_idle", &one, Strategy::LongestIdle),
        ("two_skills_longest_idle", &two, Strategy::LongestIdle),
        ("two_skills_most_proficient", &two, Strategy::MostProficient),
        ("no_skill_least_occupied", &none, Strategy::LeastOccupied),
    ] {
        let need = Need {
            channel: Channel::Chat,
            original: need_skills,
            current: need_skills,
            widened: &[],
            language: Some("en"),
            rating_queue: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                pick(
                    black_box(agents.iter()),
                    black_box(&need),
                    strategy,
                    true,
                    None,
                    |_| false,
                )
                .map(|(a, _)| a.idle_since)
            })
        });
    }
    group.finish();

    // The same decisions through the candidate pools (the index the switchboard uses):
    // a decision is the first ready agent of the conversation's class; taking it
    // re-indexes that agent (their load changed).
    let mut group = c.benchmark_group("pooled_decision_10k_agents_50_skills");
    group.throughput(Throughput::Elements(1));
    for (name, need_skills, strategy) in [
        ("one_skill_longest_idle", &one, Strategy::LongestIdle),
        ("two_skills_most_proficient", &two, Strategy::MostProficient),
        ("no_skill_least_occupied", &none, Strategy::LeastOccupied),
    ] {
        let mut pools = Pools::default();
        pools.sync(agents.iter(), true);
        let key = ClassKey {
            channel: Channel::Chat,
            original: need_skills.clone(),
            current: need_skills.clone(),
            widened: Vec::new(),
            language: Some("en".into()),
            strategy,
            rating_queue: None,
        };
        let class = pools.class(key, true);
        group.bench_function(format!("{name}_pick"), |b| {
            b.iter(|| pools.pick(black_box(class), None, |_| false))
        });
        let mut agents = agents.clone();
        let at: std::collections::HashMap<Id, usize> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        group.bench_function(format!("{name}_pick_and_reindex"), |b| {
            b.iter(|| {
                let id = pools.pick(black_box(class), None, |_| false);
                if let Some(agent) = id.and_then(|id| at.get(&id)).map(|&i| &mut agents[i]) {
                    // Taken, then released: two re-indexes, as an offer and its end.
                    agent.load[0] += 1;
                    pools.index(agent, true);
                    agent.load[0] -= 1;
                    pools.index(agent, true);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
