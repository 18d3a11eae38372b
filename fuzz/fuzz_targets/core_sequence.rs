//! The core: a random world (3-4 agents with skills and capacities, 3 customers, two
//! queues and one that does not exist) and a random sequence of operations (starts,
//! posts with repeated client ids, ends, hellos, typing, agents connecting, dropping,
//! changing status, accepting, rejecting, closing, time passing, crash and restart),
//! driven through `Switchboard` by the harness of `src/core/proptests.rs`, which
//! checks after every step, against a model kept from the effects alone:
//! `check_invariants`; per conversation seq 1, 2, 3... with no gap or repeat; every
//! event told exactly to its conversation's customer and agent; acked posts stored
//! once (a repeated client id gets the first seq); one reply per request; offers only
//! to agents online, available, qualified and with room (so never over capacity);
//! nothing for an unknown conversation; timers on time; places in line true; work
//! conservation; and after a restart, the same from the store's records. A final drain
//! checks that everything someone can take gets offered.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use warmline::core::checked::{AgentSpec, CUSTOMERS, Harness, Op, World};

/// Operations per input, at most (the proptest runs up to 120; longer inputs cost
/// speed more than they find).
const MAX_OPS: usize = 160;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(world) = world(&mut u) else {
        return;
    };
    if let Err(e) = run(&world, &mut u) {
        panic!("core property broken: {e}\nworld: {world:?}");
    }
});

fn run(world: &World, u: &mut Unstructured<'_>) -> Result<(), String> {
    let mut h = Harness::new(world, false);
    for i in 0..world.agents.len() {
        if u.ratio(7, 10).unwrap_or(false) {
            h.connect(i)?;
            h.set_status(i, true)?;
        }
    }
    let mut epoch = 1;
    let mut log: Vec<String> = Vec::new();
    while log.len() < MAX_OPS && !u.is_empty() {
        let Ok(step) = step(u) else { break };
        log.push(format!("{step:?}"));
        let done = match step {
            Step::Op(op) => h.apply(&op),
            Step::Restart { dt } => {
                epoch += 1;
                h.restart(world, dt, epoch)
            }
        };
        done.map_err(|e| format!("{e}\nafter steps:\n{}", log.join("\n")))?;
    }
    h.drain()
        .map_err(|e| format!("drain: {e}\nafter steps:\n{}", log.join("\n")))
}

#[derive(Debug)]
enum Step {
    Op(Op),
    /// Crash, and come back from the store `dt` ms later.
    Restart {
        dt: u64,
    },
}

fn world(u: &mut Unstructured<'_>) -> arbitrary::Result<World> {
    let n = u.int_in_range(3usize..=4)?;
    let mut agents = Vec::with_capacity(n);
    for _ in 0..n {
        agents.push(AgentSpec {
            levels: [u.int_in_range(0..=5)?, u.int_in_range(0..=5)?],
            chat: u.int_in_range(0..=3)?,
            voice: u.int_in_range(0..=1)?,
        });
    }
    Ok(World {
        agents,
        max_missed: u.int_in_range(0..=3)?,
    })
}

fn levels(u: &mut Unstructured<'_>) -> arbitrary::Result<[u8; 2]> {
    Ok(if u.ratio(2, 3)? {
        [0, 0]
    } else {
        [u.int_in_range(0..=5)?, u.int_in_range(0..=5)?]
    })
}

fn cmid(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<u8>> {
    Ok(if u.ratio(3, 5)? {
        Some(u.int_in_range(0..=3)?)
    } else {
        None
    })
}

/// One step, weighted like the proptest's `op()` (small ids, so operations collide).
fn step(u: &mut Unstructured<'_>) -> arbitrary::Result<Step> {
    let agent = |u: &mut Unstructured<'_>| u.int_in_range(0usize..=3);
    let pick = |u: &mut Unstructured<'_>| u.int_in_range(0usize..=63);
    let rare = |u: &mut Unstructured<'_>| u.ratio(1, 10);
    // Weights: start 5, customer post 4, agent post 2, end 2, burst 1, hello 1,
    // typing 1, connect 3, disconnect 2, status 3, accept 4, reject 1, close 2,
    // tick 4, restart 1 (36 in all).
    let roll = u.int_in_range(0u8..=35)?;
    let op = match roll {
        0..=4 => Op::Start {
            customer: u.int_in_range(0..=CUSTOMERS - 1)?,
            queue: if u.ratio(1, 13)? {
                2
            } else {
                u.int_in_range(0..=1)?
            },
            voice: u.ratio(3, 10)?,
            levels: levels(u)?,
            text: u.arbitrary()?,
            reuse: u.ratio(1, 20)?,
            pick: pick(u)?,
        },
        5..=8 => Op::CustomerPost {
            pick: pick(u)?,
            cmid: cmid(u)?,
            wrong: rare(u)?,
            stale: rare(u)?,
        },
        9..=10 => Op::AgentPost {
            agent: agent(u)?,
            pick: pick(u)?,
            cmid: cmid(u)?,
            foreign: rare(u)?,
        },
        11..=12 => Op::End {
            pick: pick(u)?,
            wrong: rare(u)?,
            stale: rare(u)?,
        },
        13 => {
            let n = u.int_in_range(2usize..=8)?;
            let mut cmids = Vec::with_capacity(n);
            for _ in 0..n {
                cmids.push(if u.ratio(9, 10)? {
                    Some(u.int_in_range(0..=4)?)
                } else {
                    None
                });
            }
            Op::Burst {
                pick: pick(u)?,
                cmids,
            }
        }
        14 => Op::Hello {
            customer: u.int_in_range(0..=CUSTOMERS - 1)?,
        },
        15 => Op::Typing {
            pick: pick(u)?,
            agent_side: u.arbitrary()?,
            on: u.arbitrary()?,
        },
        16..=18 => Op::Connect { agent: agent(u)? },
        19..=20 => Op::Disconnect {
            agent: agent(u)?,
            holder: u.arbitrary()?,
        },
        21..=23 => Op::SetStatus {
            agent: agent(u)?,
            available: u.ratio(7, 10)?,
        },
        24..=27 => Op::Accept {
            agent: agent(u)?,
            pick: pick(u)?,
            bogus: rare(u)?,
        },
        28 => Op::Reject {
            agent: agent(u)?,
            pick: pick(u)?,
            bogus: rare(u)?,
        },
        29..=30 => Op::Close {
            agent: agent(u)?,
            pick: pick(u)?,
            resolution: u.int_in_range(0..=2)?,
            foreign: rare(u)?,
        },
        31..=34 => Op::Tick { dt: dt(u)? },
        _ => return Ok(Step::Restart { dt: dt(u)? }),
    };
    Ok(Step::Op(op))
}

/// Time passing: short (within timers), medium (past wrap-up and re-offer), long
/// (past offer timeouts and the grace period).
fn dt(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => u.int_in_range(0..=499)?,
        1 => u.int_in_range(500..=3_999)?,
        _ => u.int_in_range(4_000..=11_999)?,
    })
}
