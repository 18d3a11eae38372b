//! The operator API, `/api/v1`, behind a Bearer admin token: queues and agents
//! (list, read, create, change, remove) and the live state of a queue. Errors are
//! JSON `{"code","message","field"?}`; a body that does not parse names the field.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::oneshot;

use super::App;
use super::audit::{self, Denial};
use super::definitions::ApiError;
use super::hub::{AdminRequest, Command};
use crate::config::{AgentConfig, QueueConfig};
use crate::protocol::ErrorCode;

/// The OpenAPI 3.1 description of the operator API, served at
/// `GET /api/v1/openapi.json`. Written by hand and kept in step with [`table`] by the
/// tests below: every route of the table is documented and every documented
/// operation is routed.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// Every HTTP route of the operator API: `(method, path, handler)`. The router is
/// built from this table and nothing else, so the test that compares it with
/// [`OPENAPI`] sees every route there is.
pub(crate) fn table() -> Vec<(Method, &'static str, MethodRouter<Arc<App>>)> {
    vec![
        route!(GET, "/api/v1/openapi.json", openapi),
        route!(GET, "/api/v1/queues", list_queues),
        route!(POST, "/api/v1/queues", create::<QueueConfig>),
        route!(GET, "/api/v1/queues/{name}", get_queue),
        route!(PUT, "/api/v1/queues/{name}", update::<QueueConfig>),
        route!(DELETE, "/api/v1/queues/{name}", delete_queue),
        route!(GET, "/api/v1/queues/{name}/state", queue_state),
        route!(GET, "/api/v1/agents", list_agents),
        route!(POST, "/api/v1/agents", create::<AgentConfig>),
        route!(GET, "/api/v1/agents/{id}", get_agent),
        route!(PUT, "/api/v1/agents/{id}", update::<AgentConfig>),
        route!(DELETE, "/api/v1/agents/{id}", delete_agent),
        route!(GET, "/api/v1/customers/{id}", get_customer),
        route!(POST, "/api/v1/customers/{id}/context", post_context),
        route!(GET, "/api/v1/follow-ups", list_follow_ups),
        route!(GET, "/api/v1/reports/satisfaction", satisfaction_report),
        route!(POST, "/api/v1/agents/{id}/revoke", revoke_agent),
    ]
}

/// `GET /api/v1/openapi.json`: no token needed to read the description itself.
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// Whether the request bears the admin token (compared without an early exit).
pub(crate) fn bears_admin_token(headers: &HeaderMap, admin_token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .as_bytes();
    let want = admin_token.as_bytes();
    given.len() == want.len()
        && given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub(crate) const NEEDS_ADMIN_TOKEN: &str =
    "the operator API needs `Authorization: Bearer <admin token>`";

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if bears_admin_token(headers, &app.admin_token) {
        Ok(())
    } else {
        audit::denied(
            &app.metrics,
            "operator",
            "unknown",
            "api",
            Denial::Unauthorized,
            NEEDS_ADMIN_TOKEN,
        );
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            NEEDS_ADMIN_TOKEN,
        ))
    }
}

/// A failed store read, logged with `what`, as the API says it: 503, try again.
fn read_failed(what: &'static str) -> impl Fn(crate::store::StoreError) -> ApiError {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the store could not be read; try again",
        )
    }
}

/// An error answer, counted by code.
fn failed(app: &App, e: ApiError) -> Response {
    app.metrics.error(e.code);
    e.into_response()
}

/// `authorize`, counting a refusal: the response to send instead, if refused.
fn refusal(app: &App, headers: &HeaderMap) -> Option<Response> {
    authorize(app, headers).err().map(|e| {
        app.metrics.error(e.code);
        e.into_response()
    })
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let message = message
            .find(" at line ")
            .map_or(message.as_str(), |i| &message[..i])
            .to_owned();
        if field == "." {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadJson, message)
        } else {
            ApiError::invalid(field, message)
        }
    })
}

async fn ask(app: &App, request: AdminRequest) -> Result<serde_json::Value, ApiError> {
    let (reply, answer) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the gateway is shutting down",
        )
    };
    app.hub
        .send(Command::Admin { request, reply })
        .await
        .map_err(|_| unavailable())?;
    answer.await.map_err(|_| unavailable())?
}

async fn run(app: Arc<App>, headers: HeaderMap, request: AdminRequest, ok: StatusCode) -> Response {
    if let Some(refused) = refusal(&app, &headers) {
        return refused;
    }
    match ask(&app, request).await {
        Ok(serde_json::Value::Null) => StatusCode::NO_CONTENT.into_response(),
        Ok(value) => (ok, axum::Json(value)).into_response(),
        Err(e) => {
            app.metrics.error(e.code);
            e.into_response()
        }
    }
}

/// A definition the API creates and changes: a queue or an agent.
trait Definition: DeserializeOwned {
    /// The field that names it (and must match the path on PUT).
    const NAME_FIELD: &'static str;
    fn name(&self) -> &str;
    fn put(self, create: bool) -> AdminRequest;
}

impl Definition for QueueConfig {
    const NAME_FIELD: &'static str = "name";
    fn name(&self) -> &str {
        &self.name
    }
    fn put(self, create: bool) -> AdminRequest {
        AdminRequest::PutQueue {
            queue: self,
            create,
        }
    }
}

impl Definition for AgentConfig {
    const NAME_FIELD: &'static str = "id";
    fn name(&self) -> &str {
        &self.id
    }
    fn put(self, create: bool) -> AdminRequest {
        AdminRequest::PutAgent {
            agent: self,
            create,
        }
    }
}

/// `POST /api/v1/{queues,agents}`.
async fn create<T: Definition>(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match parse::<T>(&body) {
        Ok(item) => run(app, headers, item.put(true), StatusCode::CREATED).await,
        Err(e) => refuse(&app, &headers, e),
    }
}

/// `PUT /api/v1/{queues,agents}/{name}`: the body's name must match the path's.
async fn update<T: Definition>(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let item = parse::<T>(&body).and_then(|item| {
        if item.name() == name {
            Ok(item)
        } else {
            let message = format!("must match the path (`{name}`)");
            Err(ApiError::invalid(T::NAME_FIELD, message))
        }
    });
    match item {
        Ok(item) => run(app, headers, item.put(false), StatusCode::OK).await,
        Err(e) => refuse(&app, &headers, e),
    }
}

async fn list_queues(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    run(app, headers, AdminRequest::ListQueues, StatusCode::OK).await
}

async fn get_queue(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    run(app, headers, AdminRequest::GetQueue(name), StatusCode::OK).await
}

async fn queue_state(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    run(app, headers, AdminRequest::QueueState(name), StatusCode::OK).await
}

async fn delete_queue(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    run(
        app,
        headers,
        AdminRequest::RemoveQueue(name),
        StatusCode::NO_CONTENT,
    )
    .await
}

async fn list_agents(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    run(app, headers, AdminRequest::ListAgents, StatusCode::OK).await
}

async fn get_agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(app, headers, AdminRequest::GetAgent(id), StatusCode::OK).await
}

async fn delete_agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(
        app,
        headers,
        AdminRequest::RemoveAgent(id),
        StatusCode::NO_CONTENT,
    )
    .await
}

/// Revokes an agent: tokens issued until now are refused from now on (durably,
/// before the answer) and every socket of the agent closes at once (4004).
async fn revoke_agent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers) {
        return refused;
    }
    let known = app
        .known_agents
        .read()
        .is_ok_and(|agents| agents.contains(&id));
    if !known {
        let shown: String = id.chars().take(64).collect();
        return failed(
            &app,
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("there is no agent `{shown}`"),
            ),
        );
    }
    let at = super::auth::unix_now();
    if let Err(e) = app.store.revoke_agent(&id, at).await {
        tracing::error!(error = %e, "keeping a revocation failed");
        return failed(
            &app,
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the revocation could not be kept; nothing was revoked, try again",
            ),
        );
    }
    let closed = app.limits.revoke(&id.as_str().into(), at);
    tracing::warn!(target: "warmline::audit", agent = %id, closed, "agent revoked by an operator");
    axum::Json(json!({ "agent_id": id, "revoked_at": at, "closed": closed })).into_response()
}

/// A bad body: the caller still has to be authorised to learn what was wrong.
fn refuse(app: &App, headers: &HeaderMap, e: ApiError) -> Response {
    let e = authorize(app, headers).err().unwrap_or(e);
    app.metrics.error(e.code);
    e.into_response()
}

/// A customer: when first and last seen, and their conversations, newest first.
async fn get_customer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers) {
        return refused;
    }
    let store_error = read_failed("reading a customer");
    let customer = match app.store.customer(&id).await {
        Ok(Some(customer)) => customer,
        Ok(None) => {
            let shown: String = id.chars().take(128).collect();
            return failed(
                &app,
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    format!("there is no customer `{shown}`"),
                ),
            );
        }
        Err(e) => return failed(&app, store_error(e)),
    };
    let past = match app.store.past_conversations(&id, 100).await {
        Ok(past) => past,
        Err(e) => return failed(&app, store_error(e)),
    };
    let conversations: Vec<_> = past.iter().map(super::encode::history_entry).collect();
    axum::Json(json!({
        "id": customer.id,
        "name": customer.name,
        "first_seen": super::encode::rfc3339(customer.first_seen),
        "last_seen": super::encode::rfc3339(customer.last_seen),
        "conversations": conversations,
    }))
    .into_response()
}

/// Most attributes in one context post, and the longest value.
const MAX_CONTEXT_KEYS: usize = 64;
const MAX_CONTEXT_VALUE_BYTES: usize = 1024;
/// Default and longest time context is kept.
const DEFAULT_CONTEXT_TTL_S: u64 = 3600;
const MAX_CONTEXT_TTL_S: u64 = 7 * 24 * 3600;

/// `POST /api/v1/customers/{id}/context {"attributes":{...},"ttl_seconds"?}`: an IVR or a
/// bot attaches what it learned (account number, intent) before the customer reaches
/// an agent. Trusted: the queue's rules route on it, and the agent sees it.
async fn post_context(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&app, &headers) {
        return refused;
    }
    let (attributes, ttl) = match parse_context(&body) {
        Ok(parsed) => parsed,
        Err(e) => return failed(&app, e),
    };
    let now = super::hub::now_ms();
    let expires_at = now + ttl * 1000;
    match app
        .store
        .put_context(&id, &attributes, expires_at, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            let shown: String = id.chars().take(128).collect();
            let message = format!(
                "there is no customer `{shown}`; context is attached to a customer who has said hello or called before"
            );
            return failed(
                &app,
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "storing customer context failed");
            let message = "the store could not keep the context; nothing was stored, try again";
            return failed(
                &app,
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    message,
                ),
            );
        }
    }
    let current = app.store.context(&id, now).await.unwrap_or_default();
    let current: serde_json::Map<String, serde_json::Value> = current
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    axum::Json(json!({
        "customer_id": id,
        "attributes": current,
        "expires_at": super::encode::rfc3339(expires_at),
    }))
    .into_response()
}

fn parse_context(body: &Bytes) -> Result<(Vec<(String, String)>, u64), ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ContextBody {
        attributes: serde_json::Map<String, serde_json::Value>,
        ttl_seconds: Option<u64>,
    }
    let parsed: ContextBody = parse(body)?;
    if parsed.attributes.is_empty() {
        return Err(ApiError::invalid(
            "attributes",
            "must name at least one attribute",
        ));
    }
    if parsed.attributes.len() > MAX_CONTEXT_KEYS {
        return Err(ApiError::invalid(
            "attributes",
            format!("at most {MAX_CONTEXT_KEYS} attributes at once"),
        ));
    }
    let ttl = parsed.ttl_seconds.unwrap_or(DEFAULT_CONTEXT_TTL_S);
    if !(1..=MAX_CONTEXT_TTL_S).contains(&ttl) {
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!("must be between 1 and {MAX_CONTEXT_TTL_S} (7 days)"),
        ));
    }
    let mut attributes = Vec::with_capacity(parsed.attributes.len());
    for (key, value) in parsed.attributes {
        let field = format!("attributes.{key}");
        if !crate::config::valid_attribute(&key) {
            return Err(ApiError::invalid(
                field,
                "attribute names are 1-64 characters: lowercase letters, digits, `_`",
            ));
        }
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ApiError::invalid(
                    field,
                    "a value is a string, a number or a boolean",
                ));
            }
        };
        if value.len() > MAX_CONTEXT_VALUE_BYTES {
            return Err(ApiError::invalid(
                field,
                format!("is longer than {MAX_CONTEXT_VALUE_BYTES} bytes"),
            ));
        }
        attributes.push((key, value));
    }
    Ok((attributes, ttl))
}

/// A follow-up more than this late and not done is overdue.
const OVERDUE_AFTER_MS: u64 = 3600 * 1000;

/// `GET /api/v1/follow-ups?status=due|overdue|scheduled|done|all`: follow-ups by due
/// time. Default: those due or overdue (to get back to customers now).
async fn list_follow_ups(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers) {
        return refused;
    }
    let wanted: Vec<&str> = match query.get("status").map(String::as_str) {
        None => vec!["due", "overdue"],
        Some("all") => vec!["scheduled", "due", "overdue", "done"],
        Some(s @ ("due" | "overdue" | "scheduled" | "done")) => vec![s],
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            return failed(
                &app,
                ApiError::invalid(
                    "status",
                    format!("`{shown}` is not a status: due, overdue, scheduled, done or all"),
                ),
            );
        }
    };
    let rows = match app.store.follow_ups(10_000).await {
        Ok(rows) => rows,
        Err(e) => return failed(&app, read_failed("reading follow-ups")(e)),
    };
    let now = super::hub::now_ms();
    let listed: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|f| {
            let status = if f.done {
                "done"
            } else if f.due_at > now {
                "scheduled"
            } else if now - f.due_at > OVERDUE_AFTER_MS {
                "overdue"
            } else {
                "due"
            };
            wanted.contains(&status).then(|| {
                json!({
                    "id": f.id,
                    "status": status,
                    "conversation_id": f.conversation_id,
                    "customer_id": f.customer_id,
                    "queue": f.queue,
                    "agent_id": f.agent_id,
                    "due_at": super::encode::rfc3339(f.due_at),
                    "note": f.note,
                    "created_at": super::encode::rfc3339(f.created_at),
                    "opened_as": f.opened_as,
                })
            })
        })
        .collect();
    axum::Json(json!({ "follow_ups": listed })).into_response()
}

/// The latest time a report bound may name, in milliseconds since the epoch: the
/// end of year 9999 (RFC 3339 has four-digit years, and the report's times are
/// written back in RFC 3339).
const MAX_REPORT_MS: u64 = 253_402_300_799_999;

/// Reads a report bound: an RFC 3339 time (any offset) or milliseconds since the
/// epoch, from 1970 to the end of 9999.
fn report_time(field: &str, value: Option<&String>, default: u64) -> Result<u64, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let ms = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok()
    } else {
        value
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| u64::try_from(t.as_millisecond()).ok())
    };
    ms.filter(|ms| *ms <= MAX_REPORT_MS).ok_or_else(|| {
        ApiError::invalid(
            field,
            "an RFC 3339 time (2026-11-01T00:00:00Z, 2026-11-01T01:00:00+01:00) or milliseconds since the epoch, from 1970 to the end of 9999",
        )
    })
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 1000.0)
}

/// `GET /api/v1/reports/satisfaction?from&to&group_by=queue|agent`: conversations
/// closed in `[from, to)` (default: the last 30 days), per queue or agent. JSON, or CSV
/// with `Accept: text/csv`.
async fn satisfaction_report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refusal(&app, &headers) {
        return refused;
    }
    let now = super::hub::now_ms();
    let bounds = report_time("to", query.get("to"), now).and_then(|to| {
        let from = report_time(
            "from",
            query.get("from"),
            to.saturating_sub(30 * 86_400_000),
        )?;
        if from >= to {
            return Err(ApiError::invalid("from", "must be before `to`"));
        }
        Ok((from, to))
    });
    let (from, to) = match bounds {
        Ok(b) => b,
        Err(e) => return failed(&app, e),
    };
    let by_agent = match query.get("group_by").map(String::as_str) {
        None | Some("queue") => false,
        Some("agent") => true,
        Some(_) => {
            return failed(&app, ApiError::invalid("group_by", "`queue` or `agent`"));
        }
    };
    let rows = match app.store.satisfaction_report(by_agent, from, to).await {
        Ok(rows) => rows,
        Err(e) => return failed(&app, read_failed("the satisfaction report")(e)),
    };
    let groups: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "key": r.key,
                "conversations": r.conversations,
                "csat": {
                    "mean": (r.surveyed > 0).then(|| (r.csat_sum as f64 / r.surveyed as f64 * 100.0).round() / 100.0),
                    "responses": r.surveyed,
                    "response_rate": ratio(r.surveyed, r.conversations),
                    "distribution": {"1": r.csat_counts[0], "2": r.csat_counts[1], "3": r.csat_counts[2], "4": r.csat_counts[3], "5": r.csat_counts[4]},
                },
                "effort_mean": (r.effort_answers > 0).then(|| (r.effort_sum as f64 / r.effort_answers as f64 * 100.0).round() / 100.0),
                "resolved_rate": ratio(r.resolved, r.conversations),
                "fcr_rate": ratio(r.first_contact_resolved, r.conversations),
                "transfer_rate": ratio(r.transferred, r.conversations),
                "bounce_rate": ratio(r.bounced, r.conversations),
                "abandoned_rate": ratio(r.abandoned, r.conversations),
                "repeated_info_per_100": ratio(r.repeated_info * 100, r.conversations),
                "ended_on_bad_terms_rate": ratio(r.ended_on_bad_terms, r.conversations),
                "satisfaction_mean": (r.satisfaction_n > 0).then(|| (r.satisfaction_centi_sum as f64 / r.satisfaction_n as f64).round() / 100.0),
                "coaching_flags_per_100": {
                    "negative": ratio(r.flags_negative * 100, r.conversations),
                    "positive": ratio(r.flags_positive * 100, r.conversations),
                },
                "handle_ms_mean": (r.handled > 0).then(|| r.handle_ms_sum / r.handled),
            })
        })
        .collect();
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if csv {
        let mut out = String::from(
            "key,conversations,csat_mean,csat_responses,csat_response_rate,csat_1,csat_2,csat_3,csat_4,csat_5,effort_mean,resolved_rate,fcr_rate,transfer_rate,bounce_rate,abandoned_rate,repeated_info_per_100,negative_flags_per_100,positive_flags_per_100,handle_ms_mean,ended_on_bad_terms_rate,satisfaction_mean\n",
        );
        let cell = |v: &serde_json::Value| match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => csv_field(s),
            other => other.to_string(),
        };
        for g in &groups {
            let c = &g["csat"];
            let d = &c["distribution"];
            let f = &g["coaching_flags_per_100"];
            let cells = [
                &g["key"],
                &g["conversations"],
                &c["mean"],
                &c["responses"],
                &c["response_rate"],
                &d["1"],
                &d["2"],
                &d["3"],
                &d["4"],
                &d["5"],
                &g["effort_mean"],
                &g["resolved_rate"],
                &g["fcr_rate"],
                &g["transfer_rate"],
                &g["bounce_rate"],
                &g["abandoned_rate"],
                &g["repeated_info_per_100"],
                &f["negative"],
                &f["positive"],
                &g["handle_ms_mean"],
                &g["ended_on_bad_terms_rate"],
                &g["satisfaction_mean"],
            ];
            out.push_str(&cells.iter().map(|v| cell(v)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        return ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    }
    axum::Json(json!({
        "from": super::encode::rfc3339(from),
        "to": super::encode::rfc3339(to),
        "group_by": if by_agent { "agent" } else { "queue" },
        "groups": groups,
    }))
    .into_response()
}

/// A CSV field, quoted when it needs to be (RFC 4180), with formula characters
/// neutralised (a spreadsheet must not run `=...` from a queue name).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    //! The document and the code, kept in step: these fail when a route is added,
    //! removed or renamed without the document saying so, or when a definition
    //! gains a field the document does not describe.

    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::OPENAPI;
    use crate::config::{
        AgentConfig, CapacityConfig, HoursConfig, QueueConfig, RuleConfig, StepConfig,
    };

    /// Documented ahead of its route (none today).
    const PENDING: &[(&str, &str)] = &[];

    /// Documented and routed outside `gateway::http_table`: the status router of a
    /// node of several (`cluster.rs`, feature `redis`).
    const ELSEWHERE: &[(&str, &str)] = &[("GET", "/api/v1/cluster")];

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];

    fn doc() -> Value {
        serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert!(METHODS.contains(&method.as_str()), "{path}: `{method}`");
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
        ops
    }

    fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        list.iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let doc = doc();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let routed: BTreeSet<(String, String)> = crate::gateway::http_table()
            .into_iter()
            .map(|(m, p, _)| (m.as_str().to_owned(), p.to_owned()))
            .collect();
        for pending in pairs(PENDING) {
            assert!(
                !routed.contains(&pending),
                "{pending:?} is routed now: remove it from PENDING"
            );
        }
        let mut expected = routed.clone();
        expected.extend(pairs(PENDING));
        expected.extend(pairs(ELSEWHERE));
        let undocumented: Vec<_> = expected.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&expected).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes missing from src/gateway/openapi.json: {undocumented:?}; documented operations no route serves: {unrouted:?}"
        );
    }

    /// Routes added anywhere (another router, a feature) must be documented too:
    /// every `.route("…")` path and every `"/api/v1/…"` literal in the sources.
    #[test]
    fn every_path_in_the_sources_is_documented() {
        let doc = doc();
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut found = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Tests are not routes (this one names paths too).
                    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                    for literal in route_literals(code) {
                        found.push((path.display().to_string(), literal));
                    }
                }
            }
        }
        assert!(
            found.iter().any(|(_, l)| l == "/api/v1/cluster"),
            "the scan finds the cluster route: {found:?}"
        );
        let missing: Vec<_> = found
            .iter()
            .filter(|(_, l)| !l.starts_with("/ws/") && !l.contains('*'))
            .filter(|(_, l)| !documented.contains(l.as_str()))
            .collect();
        assert!(missing.is_empty(), "undocumented paths: {missing:?}");
    }

    /// Paths given to `.route(` or `route!(METHOD,`, and string literals that start
    /// with `/api/v1/`.
    fn route_literals(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let literal_after = |rest: &str| -> Option<String> {
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        };
        for (i, _) in text.match_indices(".route(") {
            out.extend(literal_after(&text[i + ".route(".len()..]));
        }
        for (i, _) in text.match_indices("route!(") {
            let rest = &text[i + "route!(".len()..];
            if let Some(comma) = rest.find(',') {
                out.extend(literal_after(&rest[comma + 1..]));
            }
        }
        for (i, _) in text.match_indices("\"/api/v1/") {
            out.extend(literal_after(&text[i..]));
        }
        out.retain(|l| l.starts_with('/'));
        out
    }

    #[test]
    fn the_operator_api_needs_the_token_and_every_error_is_the_error_body() {
        let doc = doc();
        let open: BTreeSet<&str> =
            ["/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"].into();
        assert_eq!(doc["security"], serde_json::json!([{"adminToken": []}]));
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            let unauthenticated = op.get("security") == Some(&serde_json::json!([]));
            assert_eq!(
                unauthenticated,
                open.contains(path.as_str()),
                "{method} {path}: security"
            );
            if !unauthenticated {
                assert!(responses.contains_key("401"), "{method} {path}: 401");
            }
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success"
            );
            for (status, response) in responses {
                let response = resolve(&doc, response);
                if status.starts_with(['4', '5']) {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        // Every reference resolves.
        let mut stack = vec![&doc];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        assert!(!resolve(&doc, v).is_null(), "dangling {r}");
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }

    fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => v,
        }
    }

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    fn fields<T: serde::Serialize>(value: &T) -> BTreeSet<String> {
        serde_json::to_value(value)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// The request bodies are the config's definitions: a field added to them must
    /// be described (and a described field must exist).
    #[test]
    fn the_definitions_schemas_have_the_configs_fields() {
        let doc = doc();
        let queue = QueueConfig::named("q");
        let agent: AgentConfig = serde_json::from_value(serde_json::json!({"id": "a"})).unwrap();
        let with_source = |mut set: BTreeSet<String>| {
            set.insert("source".to_owned());
            set
        };
        for (schema, expected) in [
            ("QueueDefinition", fields(&queue)),
            ("Queue", with_source(fields(&queue))),
            ("AgentDefinition", fields(&agent)),
            ("Agent", with_source(fields(&agent))),
            ("Step", fields(&StepConfig::default())),
            ("Hours", fields(&HoursConfig::default())),
            ("Rule", fields(&RuleConfig::default())),
            ("Capacity", fields(&CapacityConfig::default())),
        ] {
            assert_eq!(properties(&doc, schema), expected, "schema {schema}");
        }
    }
}
