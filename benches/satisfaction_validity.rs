//! Validity of the satisfaction estimate (`core::signals::satisfaction`) against human
//! ratings: the USS SGD file (Sun et al., SIGIR 2021; ../shared/data/uss/SGD.txt).
//!
//!   cargo bench --bench satisfaction_validity -- [SGD.txt] [--cues] [--ablate] [--agg]
//!       [--bench] [--dump] [--grid] [--demo] [--vader-check FILE]
//!
//! Without a path it reads `WARMLINE_USS` or ../shared/data/uss/SGD.txt.
//!
//! Dialogues are split by their position in the file: even-numbered (0, 2, 4, ...) = tuning
//! half, odd-numbered = held-out half. A user turn is dissatisfied when the mean of its ratings
//! is below 2.5; it is predicted dissatisfied when the estimate is below 2.5.

use std::time::Instant;
use warmline::core::signals::satisfaction::{Dialogue, Estimator, Params};

struct Line {
    user: bool,
    text: String,
    ratings: Option<f32>, // mean rating (user lines)
}

struct Dia {
    lines: Vec<Line>,
    overall: Option<f32>,
}

fn load(path: &str) -> Vec<Dia> {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    let mut cur = Dia {
        lines: Vec::new(),
        overall: None,
    };
    for line in raw.lines() {
        if line.trim().is_empty() {
            if !cur.lines.is_empty() || cur.overall.is_some() {
                out.push(std::mem::replace(
                    &mut cur,
                    Dia {
                        lines: Vec::new(),
                        overall: None,
                    },
                ));
            }
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let user = f[0] == "USER";
        let text = f.get(1).copied().unwrap_or("");
        let mean = f.get(3).and_then(|r| {
            let v: Vec<f32> = r.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32)
        });
        if user && text == "OVERALL" {
            cur.overall = mean;
        } else {
            cur.lines.push(Line {
                user,
                text: text.to_owned(),
                ratings: mean,
            });
        }
    }
    if !cur.lines.is_empty() {
        out.push(cur);
    }
    out
}

fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].partial_cmp(&x[b]).unwrap());
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// (f1, precision, recall, tp, fp, fn)
fn f1(pred: &[bool], truth: &[bool]) -> (f64, f64, f64, usize, usize, usize) {
    let (mut tp, mut fp, mut fnn) = (0, 0, 0);
    for (p, t) in pred.iter().zip(truth) {
        match (p, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fnn += 1,
            _ => {}
        }
    }
    let p = if tp + fp == 0 {
        0.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let r = if tp + fnn == 0 {
        0.0
    } else {
        tp as f64 / (tp + fnn) as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (f, p, r, tp, fp, fnn)
}

#[derive(Default)]
struct Run {
    // per turn: (dialogue index, estimate, vader compound, truth)
    turns: Vec<(usize, f64, f64, f64, Vec<&'static str>)>,
    // per dialogue: (dialogue index, overall estimate, truth, mean vader)
    dias: Vec<(usize, f64, f64, f64)>,
}

fn run(est: &Estimator, data: &[Dia]) -> Run {
    let mut out = Run::default();
    for (di, d) in data.iter().enumerate() {
        let mut dlg = Dialogue::new();
        let mut vsum = 0.0;
        let mut vn = 0.0;
        for l in &d.lines {
            if l.user {
                let t = dlg.customer(est, &l.text);
                let vader = est.sentiment(&l.text) as f64; // plain VADER, for the baseline
                vsum += vader;
                vn += 1.0;
                if let Some(m) = l.ratings {
                    out.turns
                        .push((di, t.estimate as f64, vader, m as f64, t.cues));
                }
            } else {
                dlg.agent(est, &l.text);
            }
        }
        if let Some(o) = d.overall {
            out.dias.push((
                di,
                dlg.overall() as f64,
                o as f64,
                if vn > 0.0 { vsum / vn } else { 0.0 },
            ));
        }
    }
    out
}

struct Figures {
    f1: (f64, f64, f64, usize, usize, usize),
    rho_turn: f64,
    rho_dia: f64,
    base_f1: (f64, f64, f64, usize, usize, usize),
    base_rho_turn: f64,
    base_rho_dia: f64,
    n_turns: usize,
    n_dias: usize,
}

fn figures(r: &Run, keep: impl Fn(usize) -> bool) -> Figures {
    let t: Vec<_> = r.turns.iter().filter(|x| keep(x.0)).collect();
    let d: Vec<_> = r.dias.iter().filter(|x| keep(x.0)).collect();
    let truth: Vec<bool> = t.iter().map(|x| x.3 < 2.5).collect();
    let pred: Vec<bool> = t.iter().map(|x| x.1 < 2.5).collect();
    let base: Vec<bool> = t.iter().map(|x| x.2 < -0.05).collect();
    let est: Vec<f64> = t.iter().map(|x| x.1).collect();
    let vad: Vec<f64> = t.iter().map(|x| x.2).collect();
    let tr: Vec<f64> = t.iter().map(|x| x.3).collect();
    let dest: Vec<f64> = d.iter().map(|x| x.1).collect();
    let dtr: Vec<f64> = d.iter().map(|x| x.2).collect();
    let dvad: Vec<f64> = d.iter().map(|x| x.3).collect();
    Figures {
        f1: f1(&pred, &truth),
        rho_turn: spearman(&est, &tr),
        rho_dia: spearman(&dest, &dtr),
        base_f1: f1(&base, &truth),
        base_rho_turn: spearman(&vad, &tr),
        base_rho_dia: spearman(&dvad, &dtr),
        n_turns: t.len(),
        n_dias: d.len(),
    }
}

fn print_figures(name: &str, f: &Figures) {
    println!(
        "{name:<9} turns={:5} dialogues={:4} | estimator: F1 {:.3} (P {:.3} R {:.3}; tp {} fp {} fn {}) rho_turn {:.3} rho_dialogue {:.3}",
        f.n_turns, f.n_dias, f.f1.0, f.f1.1, f.f1.2, f.f1.3, f.f1.4, f.f1.5, f.rho_turn, f.rho_dia
    );
    println!(
        "{:<9} {:>31} | VADER<-0.05: F1 {:.3} (P {:.3} R {:.3}; tp {} fp {} fn {}) rho_turn {:.3} rho_dialogue(mean compound) {:.3}",
        "",
        "",
        f.base_f1.0,
        f.base_f1.1,
        f.base_f1.2,
        f.base_f1.3,
        f.base_f1.4,
        f.base_f1.5,
        f.base_rho_turn,
        f.base_rho_dia
    );
}

fn even(i: usize) -> bool {
    i.is_multiple_of(2)
}
fn odd(i: usize) -> bool {
    i % 2 == 1
}

fn vader_check(est: &Estimator, path: &str) {
    let raw = std::fs::read_to_string(path).unwrap();
    let (mut n, mut bad, mut maxd) = (0, 0, 0.0f64);
    for line in raw.lines() {
        let Some((text, v)) = line.rsplit_once('\t') else {
            continue;
        };
        let want: f64 = v.parse().unwrap();
        let got = (est.sentiment(text) as f64 * 1e4).round() / 1e4;
        let d = (got - want).abs();
        n += 1;
        if d > 1.5e-4 {
            bad += 1;
            if bad <= 15 {
                println!("MISMATCH {want:+.4} vs {got:+.4}: {text}");
            }
        }
        maxd = maxd.max(d);
    }
    println!("vader check: {n} texts, {bad} differ by more than 1.5e-4, max |diff| {maxd:.4}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .iter()
        .find(|a| !a.starts_with("--") && !a.ends_with(".tsv"))
        .cloned()
        .or_else(|| std::env::var("WARMLINE_USS").ok())
        .unwrap_or_else(|| "../shared/data/uss/SGD.txt".to_owned());
    let has = |f: &str| args.iter().any(|a| a == f);
    let t0 = Instant::now();
    let est = Estimator::new();
    let build = t0.elapsed();

    if has("--demo") {
        demo(&est);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--vader-check") {
        vader_check(&est, &args[i + 1]);
        return;
    }

    let data = load(&path);
    println!(
        "{} dialogues from {path}; Estimator::new() took {:.1} ms",
        data.len(),
        build.as_secs_f64() * 1e3
    );
    println!("params: {:?}", est.params());

    if has("--grid") {
        grid(&data);
        return;
    }

    let r = run(&est, &data);
    print_figures("tuning", &figures(&r, even));
    print_figures("held-out", &figures(&r, odd));
    print_figures("all", &figures(&r, |_| true));

    if has("--cues") {
        cue_table(&r);
    }
    if has("--dump") {
        // every rated user turn of the tuning half with its context, for error analysis
        let est2 = Estimator::new();
        for (di, d) in data.iter().enumerate().filter(|(i, _)| even(*i)) {
            let mut dlg = Dialogue::new();
            let mut prev = String::new();
            for l in &d.lines {
                if l.user {
                    let t = dlg.customer(&est2, &l.text);
                    if let Some(m) = l.ratings {
                        println!(
                            "{di}\t{:.2}\t{m:.2}\t{}\tA: {prev}\tC: {}",
                            t.estimate,
                            t.cues.join(","),
                            l.text
                        );
                    }
                } else {
                    dlg.agent(&est2, &l.text);
                    prev = l.text.clone();
                }
            }
        }
    }
    if has("--ablate") {
        ablate(&data);
    }
    if has("--agg") {
        agg(&r);
    }
    if has("--bench") {
        bench(&est, &data);
    }
}

fn cue_table(r: &Run) {
    let names = [
        "reject",
        "correction",
        "decline",
        "alternative",
        "soft_correction",
        "persist",
        "repeat",
        "complaint",
        "gave_up",
        "shouting",
        "agent_failure",
        "closing",
        "positive_sentiment",
        "negative_sentiment",
    ];
    println!("\ncue diagnostics on the tuning half (turns where the cue fired):");
    println!(
        "{:<20} {:>6} {:>6} {:>8} {:>10}",
        "cue", "fired", "dissat", "rate", "mean truth"
    );
    let t: Vec<_> = r.turns.iter().filter(|x| even(x.0)).collect();
    let base = t.iter().filter(|x| x.3 < 2.5).count() as f64 / t.len() as f64;
    println!(
        "{:<20} {:>6} {:>6} {:>8.3} {:>10.2}",
        "(all turns)",
        t.len(),
        "",
        base,
        t.iter().map(|x| x.3).sum::<f64>() / t.len() as f64
    );
    for n in names {
        let f: Vec<_> = t.iter().filter(|x| x.4.contains(&n)).collect();
        let k = f.iter().filter(|x| x.3 < 2.5).count();
        let m = if f.is_empty() {
            0.0
        } else {
            f.iter().map(|x| x.3).sum::<f64>() / f.len() as f64
        };
        println!(
            "{:<20} {:>6} {:>6} {:>8.3} {:>10.2}",
            n,
            f.len(),
            k,
            k as f64 / f.len().max(1) as f64,
            m
        );
    }
}

fn grid(data: &[Dia]) {
    // Objective on the tuning half: F1 + rho_turn + rho_dialogue, with the dialogue aggregate
    // fixed to the plain mean (mix 0) while the turn weights are searched; then the mix.
    let mut best = (f64::MIN, Params::default());
    for &w_sent in &[0.0f32, 0.25, 0.5, 0.75, 1.0, 1.5] {
        for &w_reject in &[0.5f32, 0.6, 0.7, 0.8, 0.9, 1.0] {
            for &w_fail in &[0.0f32, 0.2, 0.4, 0.6] {
                {
                    let p = Params {
                        w_sent,
                        w_reject,
                        w_fail,
                        overall_mix: 0.0,
                    };
                    let est = Estimator::with_params(p);
                    let r = run(&est, data);
                    let f = figures(&r, even);
                    let obj = f.f1.0 + f.rho_turn + f.rho_dia;
                    if obj > best.0 {
                        best = (obj, p);
                    }
                    println!(
                        "obj {obj:.4} F1 {:.3} rho {:.3} rho_d {:.3} {:?}",
                        f.f1.0, f.rho_turn, f.rho_dia, p
                    );
                }
            }
        }
    }
    println!("BEST {:.4} {:?}", best.0, best.1);
    for &mix in &[0.0f32, 0.1, 0.25, 0.5, 0.75, 1.0] {
        let p = Params {
            overall_mix: mix,
            ..best.1
        };
        let r = run(&Estimator::with_params(p), data);
        let f = figures(&r, even);
        println!("mix {mix:.2}: rho_dialogue tuning {:.3}", f.rho_dia);
    }
}

fn bench(est: &Estimator, data: &[Dia]) {
    let reps = 5;
    let (mut n_c, mut n_a) = (0usize, 0usize);
    let (mut t_c, mut t_a) = (0.0f64, 0.0f64);
    let mut sink = 0.0f32;
    for _ in 0..reps {
        for d in data {
            let mut dlg = Dialogue::new();
            for l in &d.lines {
                let t0 = Instant::now();
                if l.user {
                    sink += dlg.customer(est, &l.text).estimate;
                    t_c += t0.elapsed().as_secs_f64();
                    n_c += 1;
                } else {
                    dlg.agent(est, &l.text);
                    t_a += t0.elapsed().as_secs_f64();
                    n_a += 1;
                }
            }
            sink += dlg.overall();
        }
    }
    let t1 = Instant::now();
    let mut s2 = 0.0f32;
    let mut n_s = 0;
    for _ in 0..reps {
        for d in data {
            for l in &d.lines {
                s2 += est.sentiment(&l.text);
                n_s += 1;
            }
        }
    }
    let el2 = t1.elapsed().as_secs_f64();
    println!(
        "\nbench (release, {reps} passes): customer() {:.2} us/message over {n_c}; agent() {:.2} us/message over {n_a}; sentiment() alone {:.2} us/message [{sink:.0} {s2:.0}]",
        t_c * 1e6 / n_c as f64,
        t_a * 1e6 / n_a as f64,
        el2 * 1e6 / n_s as f64
    );
}

fn ablate(data: &[Dia]) {
    let base = Params::default();
    let rows = [
        ("full formula (defaults)", base),
        (
            "without agent-failure context (w_fail=0)",
            Params {
                w_fail: 0.0,
                ..base
            },
        ),
        (
            "without sentiment (w_sent=0)",
            Params {
                w_sent: 0.0,
                ..base
            },
        ),
        (
            "without dialogue cues (w_reject=0)",
            Params {
                w_reject: 0.0,
                ..base
            },
        ),
        (
            "dialogue aggregate = plain mean (mix=0)",
            Params {
                overall_mix: 0.0,
                ..base
            },
        ),
    ];
    println!("\nablations: F1 / rho_turn / rho_dialogue on tuning | held-out | all");
    for (name, p) in rows {
        let r = run(&Estimator::with_params(p), data);
        let (a, b, c) = (figures(&r, even), figures(&r, odd), figures(&r, |_| true));
        println!(
            "{name:<42} {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3}",
            a.f1.0,
            a.rho_turn,
            a.rho_dia,
            b.f1.0,
            b.rho_turn,
            b.rho_dia,
            c.f1.0,
            c.rho_turn,
            c.rho_dia
        );
    }
}

fn demo(est: &Estimator) {
    let conv: &[(bool, &str)] = &[
        (false, "Hi, I need to change my delivery address."),
        (true, "Sure. I have updated the address to 12 Oak Street."),
        (false, "No, that's wrong, I said 21 Oak Street."),
        (
            true,
            "Sorry, I am unable to change it now. Is there anything else?",
        ),
        (false, "No, that's all."),
        (true, "Your table is booked for 7 pm."),
        (
            false,
            "Perfect, thank you so much, that was really helpful!",
        ),
        (true, "Would you like to add a dessert?"),
        (false, "No thanks."),
        (true, "Anything else I can help you with?"),
        (false, "No thanks."),
        (true, "I found the Hilton downtown."),
        (false, "Can you find another hotel?"),
        (true, "Please hold."),
        (
            false,
            "This is ridiculous, it still doesn't work and I've been waiting for an hour!",
        ),
        (true, "I booked the 9 am flight."),
        (false, "Thanks, but that's not what I asked for."),
        (true, "Here is your receipt."),
        (false, "The app is great but the delivery was slow."),
    ];
    let mut d = Dialogue::new();
    for (agent, text) in conv {
        if *agent {
            d.agent(est, text);
            println!("  AGENT: {text}");
        } else {
            let t = d.customer(est, text);
            println!(
                "{:.2} (vader {:+.3}) [{}] CUSTOMER: {text}",
                t.estimate,
                t.sentiment,
                t.cues.join(", ")
            );
        }
    }
    println!(
        "overall {:.2} after {} customer messages",
        d.overall(),
        d.turns()
    );
}

type Agg = (&'static str, Box<dyn Fn(&[f64]) -> f64>);

/// Spearman rho per dialogue for several aggregates of the turn estimates (and, for
/// comparison, of plain VADER compounds).
fn agg(r: &Run) {
    let n = r.dias.len();
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut perv: Vec<Vec<f64>> = vec![Vec::new(); n];
    for t in &r.turns {
        per[t.0].push(t.1);
        perv[t.0].push(t.2);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let min = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    let lastk = move |v: &[f64], k: usize| mean(&v[v.len().saturating_sub(k)..]);
    let aggs: Vec<Agg> = vec![
        ("mean", Box::new(mean)),
        ("min", Box::new(min)),
        ("last", Box::new(move |v| lastk(v, 1))),
        ("last3", Box::new(move |v| lastk(v, 3))),
        (
            "0.9mean+0.1min",
            Box::new(move |v| 0.9 * mean(v) + 0.1 * min(v)),
        ),
        ("mean+min", Box::new(move |v| mean(v) + min(v))),
        (
            "ewma0.3",
            Box::new(|v: &[f64]| {
                let mut s = v[0];
                for x in &v[1..] {
                    s = 0.7 * s + 0.3 * x;
                }
                s
            }),
        ),
    ];
    println!(
        "\nrho_dialogue by aggregate of turn estimates (tuning | held-out) and of VADER compounds (all):"
    );
    for (name, f) in &aggs {
        print!("{name:<16}");
        for keep in [0usize, 1] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (i, d) in r.dias.iter().enumerate() {
                if d.0 % 2 == keep && !per[i].is_empty() {
                    a.push(f(&per[i]));
                    b.push(d.2);
                }
            }
            print!(" {:.3}", spearman(&a, &b));
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, d) in r.dias.iter().enumerate() {
            if !perv[i].is_empty() {
                a.push(f(&perv[i]));
                b.push(d.2);
            }
        }
        println!(" | vader {:.3}", spearman(&a, &b));
    }
}
