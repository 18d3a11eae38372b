//! Shared pieces: the clock, loopback-only connections spread over several source
//! addresses, HDR histograms, process measurements, the progress line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type Ws = WebSocketStream<TcpStream>;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process's reference instant: scheduled times are nanoseconds since it.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

pub fn at_ns(ns: u64) -> tokio::time::Instant {
    (epoch() + Duration::from_nanos(ns)).into()
}

pub async fn sleep_until_ns(ns: u64) {
    tokio::time::sleep_until(at_ns(ns)).await;
}

/// Sleeps until `ns`, or forever when `None` (a disabled `select!` branch).
pub async fn sleep_opt(ns: Option<u64>) {
    match ns {
        Some(ns) => sleep_until_ns(ns).await,
        None => std::future::pending().await,
    }
}

static SOURCE_COUNT: AtomicUsize = AtomicUsize::new(8);
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Connections are spread over 127.0.0.2 .. 127.0.0.(1 + n), so that more than one
/// address's ephemeral ports (about 28,000) are available.
pub fn set_sources(n: u8) {
    SOURCE_COUNT.store(usize::from(n.max(1)), Ordering::Relaxed);
}

fn source_ip() -> Ipv4Addr {
    let n = SOURCE_COUNT.load(Ordering::Relaxed);
    let i = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % n;
    Ipv4Addr::new(127, 0, 0, 2 + i as u8)
}

/// Refuses anything but a loopback address: this tool never loads another machine.
pub fn check_loopback(addr: &SocketAddr) -> Result<()> {
    let ok = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !ok {
        bail!("{addr} is not a loopback address: only 127.0.0.0/8 or ::1 may be load-tested");
    }
    Ok(())
}

/// A TCP connection to `addr` from `source` (an IPv4 loopback address; bound before
/// connect).
pub async fn tcp_connect_from(addr: SocketAddr, source: Ipv4Addr) -> Result<TcpStream> {
    check_loopback(&addr)?;
    let stream = match addr {
        SocketAddr::V4(_) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
            socket.connect(addr).await?
        }
        SocketAddr::V6(_) => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
}

/// A WebSocket client connection (with an `Origin` for customer endpoints).
pub async fn ws_connect(addr: SocketAddr, path: &str) -> Result<Ws> {
    ws_connect_from(addr, path, source_ip()).await
}

/// A WebSocket client connection from `source`.
pub async fn ws_connect_from(addr: SocketAddr, path: &str, source: Ipv4Addr) -> Result<Ws> {
    let stream = tcp_connect_from(addr, source).await?;
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    request.headers_mut().insert(
        "Origin",
        HeaderValue::from_static("http://loadtest.invalid"),
    );
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
        .await
        .with_context(|| format!("WebSocket upgrade on {path}"))?;
    Ok(ws)
}

/// A latency histogram in microseconds, shared by tasks.
pub struct Hist(Mutex<Histogram<u64>>);

impl Default for Hist {
    fn default() -> Self {
        Hist(Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
        ))
    }
}

impl Hist {
    pub fn record_ns(&self, ns: u64) {
        let us = (ns / 1000).clamp(1, 3_600_000_000);
        self.0.lock().unwrap().saturating_record(us);
    }

    /// Records the time from `sched_ns` (the scheduled send) to now.
    pub fn since(&self, sched_ns: u64) {
        self.record_ns(now_ns().saturating_sub(sched_ns));
    }

    /// A copy of the histogram as it is now (to pool phases).
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0.lock().unwrap().clone()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        let h = self.0.lock().unwrap();
        if h.is_empty() {
            return 0.0;
        }
        h.value_at_quantile(q) as f64 / 1000.0
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> Value {
        let h = self.0.lock().unwrap();
        if h.is_empty() {
            return json!({"count": 0});
        }
        let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
        json!({
            "count": h.len(),
            "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            "p50_ms": ms(h.value_at_quantile(0.5)),
            "p90_ms": ms(h.value_at_quantile(0.9)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "p999_ms": ms(h.value_at_quantile(0.999)),
            "max_ms": ms(h.max()),
        })
    }

    pub fn short(&self) -> String {
        let h = self.0.lock().unwrap();
        if h.is_empty() {
            return "-".into();
        }
        let f = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.1} ms",
            f(0.5),
            f(0.99),
            f(0.999),
            h.max() as f64 / 1000.0
        )
    }
}

pub fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Prints `line()` to stderr once a second until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

impl Progress {
    pub fn start(label: &str, line: impl Fn() -> String + Send + 'static) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let label = label.to_owned();
        let started = Instant::now();
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if !QUIET.load(Ordering::Relaxed) {
                    eprintln!(
                        "[{label} {:>5.1}s] {}",
                        started.elapsed().as_secs_f64(),
                        line()
                    );
                }
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

pub fn note(msg: impl AsRef<str>) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("{}", msg.as_ref());
    }
}

/// A plain HTTP GET on loopback: the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    Ok(http_request(addr, path, None).await?.1)
}

/// A plain HTTP GET on loopback, with a bearer token if given: the status and the body.
pub async fn http_request(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> Result<(u16, String)> {
    check_loopback(&addr)?;
    let mut stream = TcpStream::connect(addr).await?;
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {path}: not an HTTP response: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The sum of a Prometheus metric's samples whose line starts with `prefix`.
pub async fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let Ok(body) = http_get(addr, "/metrics").await else {
        return f64::NAN;
    };
    body.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Least-squares slope of y over x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    num / den
}

/// The result of one scenario run: a JSON report, a human summary, and any
/// correctness failures (lost, unacked or duplicated messages, dropped frames,
/// errors).
pub struct Outcome {
    pub name: String,
    pub report: Value,
    pub summary: String,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn print(&self) {
        println!("== {} ==\n{}", self.name, self.summary.trim_end());
        for f in &self.failures {
            println!("  FAILED: {f}");
        }
    }

    pub fn json(&self) -> Value {
        let mut v = self.report.clone();
        v["scenario"] = json!(self.name);
        v["failures"] = json!(self.failures);
        v
    }
}

pub fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
