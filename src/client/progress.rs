//! Following an operation to its end: live progress from the operation's
//! events, Ctrl-C handling, and the log on request.
//!
//! Invariants:
//! - the event subscription is made before the operation is submitted (or
//!   read), so no progress event is missed; if the stream ends or lags, the
//!   follower falls back to long-polling `GET /v1/operations/{id}/wait`;
//! - the first Ctrl-C asks the daemon to cancel (`DELETE`) and says so; the
//!   second detaches ([`ClientError::Detached`], which prints how to
//!   re-attach); the SIGINT handler exists only while following;
//! - a progress bar (indicatif, on stderr) only when stderr is a terminal;
//!   otherwise plain timestamped lines with no escape codes.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::error::ClientError;
use super::http::{Client, EventStream};
use super::render::{self, Style};
use super::Output;
use crate::api::{EventType, OpStatus, Operation};

/// How often the log is polled while following with `--log` / `-v`.
const LOG_POLL: Duration = Duration::from_millis(500);
/// Long-poll timeout when the event stream is unavailable.
const WAIT_POLL_SECS: u64 = 5;

enum Sink {
    Bar(ProgressBar),
    Lines { last: Option<(u32, String, u32)> },
    Silent,
}

/// Renders an operation's progress as it changes.
struct Renderer {
    sink: Sink,
    style: Style,
}

fn clock() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

impl Renderer {
    fn new(out: &Output) -> Self {
        let sink = if out.json || out.quiet {
            Sink::Silent
        } else if out.stderr_tty {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let template = if out.color {
                "{spinner:.cyan} {prefix:.bold} [{bar:20.cyan/blue}] {pos}/{len} {wide_msg}"
            } else {
                "{spinner} {prefix} [{bar:20}] {pos}/{len} {wide_msg}"
            };
            if let Ok(s) = ProgressStyle::with_template(template) {
                bar.set_style(s.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            Sink::Bar(bar)
        } else {
            Sink::Lines { last: None }
        };
        Renderer {
            sink,
            style: out.style(),
        }
    }

    fn update(&mut self, op: &Operation) {
        let p = &op.progress;
        match &mut self.sink {
            Sink::Bar(bar) => {
                bar.set_prefix(format!("{} {}", op.kind, op.id));
                bar.set_length(u64::from(p.steps.max(1)));
                bar.set_position(u64::from(p.step));
                let mut msg = if p.steps == 0 {
                    render::status_name(op.status).to_string()
                } else {
                    p.name.clone()
                };
                if let Some(pc) = p.percent {
                    msg.push_str(&format!(" {pc:.0}%"));
                }
                bar.set_message(msg);
            }
            Sink::Lines { last } => {
                if p.steps == 0 {
                    return;
                }
                // One line per step, and per 10% of a step's progress.
                let decile = p.percent.map(|x| (x / 10.0) as u32).unwrap_or(0);
                let key = (p.step, p.name.clone(), decile);
                if last.as_ref() != Some(&key) {
                    eprintln!("{}  {} {}", clock(), op.id, render::progress(op));
                    *last = Some(key);
                }
            }
            Sink::Silent => {}
        }
    }

    fn say(&self, line: &str) {
        match &self.sink {
            Sink::Bar(bar) => bar.println(line),
            Sink::Lines { .. } => eprintln!("{}  {line}", clock()),
            Sink::Silent => {}
        }
    }

    /// A log line (always shown when asked for, even in quiet mode).
    fn log(&self, line: &str) {
        match &self.sink {
            Sink::Bar(bar) => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    fn finish(&mut self, op: &Operation) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
        if matches!(self.sink, Sink::Silent) {
            return;
        }
        let status = render::paint(
            render::status_name(op.status),
            Some(render::op_tone(op.status)),
            self.style,
        );
        let why = op
            .error
            .as_ref()
            .map(|e| format!(": {}", e.message))
            .unwrap_or_default();
        let line = format!("operation {} ({}) {status}{why}", op.id, op.kind);
        match &self.sink {
            Sink::Lines { .. } => eprintln!("{}  {line}", clock()),
            _ => eprintln!("{line}"),
        }
    }

    fn abandon(&self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.abandon();
        }
    }
}

/// Subscribes to operation events, then submits; follows the operation
/// unless `no_wait`. Returns the operation as it ended (or as accepted).
pub async fn submit<F, Fut>(
    client: &Client,
    out: &Output,
    no_wait: bool,
    submit: F,
) -> Result<Operation, ClientError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Operation, ClientError>>,
{
    let stream = if no_wait {
        None
    } else {
        Some(client.events(&["operation"]).await?)
    };
    let op = submit().await?;
    match stream {
        None => Ok(op),
        Some(s) => follow(client, out, op, Some(s), false).await,
    }
}

/// Follows operation `id` to its end (`1ldctl op ID --wait`).
pub async fn attach(
    client: &Client,
    out: &Output,
    id: &str,
    log: bool,
) -> Result<Operation, ClientError> {
    let stream = client.events(&["operation"]).await.ok();
    let op = client.operation(id).await?;
    follow(client, out, op, stream, log).await
}

/// Ctrl-C (SIGINT) as a stream, so the command can end cleanly on it.
pub(super) fn ctrl_c() -> Result<tokio::signal::unix::Signal, ClientError> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| {
        ClientError::Protocol {
            what: "installing the Ctrl-C handler".into(),
            detail: e.to_string(),
        }
    })
}

/// Renders `op` until it ends. `stream` was subscribed before `op` was read.
pub async fn follow(
    client: &Client,
    out: &Output,
    mut op: Operation,
    mut stream: Option<EventStream>,
    log: bool,
) -> Result<Operation, ClientError> {
    let mut r = Renderer::new(out);
    let log = log || (out.verbose > 0 && !out.json);
    let mut log_offset = 0u64;
    let mut interrupts = 0u32;
    let mut sigint = ctrl_c()?;
    let mut log_tick = tokio::time::interval(LOG_POLL);
    r.update(&op);
    while !op.status.is_final() {
        tokio::select! {
            ev = next_for(&mut stream, &op.id) => match ev {
                Some(new) => op = new,
                // The stream ended or lagged: poll instead.
                None => stream = None,
            },
            polled = client.wait(&op.id, WAIT_POLL_SECS), if stream.is_none() => op = polled?,
            _ = sigint.recv() => {
                interrupts += 1;
                if interrupts >= 2 {
                    r.abandon();
                    return Err(ClientError::Detached { id: op.id.clone() });
                }
                match client.cancel(&op.id).await {
                    Ok(now) => {
                        r.say(&format!(
                            "cancel requested for operation {}; Ctrl-C again to detach",
                            op.id
                        ));
                        op = now;
                    }
                    Err(e) => r.say(&format!(
                        "cannot cancel operation {}: {e}; Ctrl-C again to detach",
                        op.id
                    )),
                }
            },
            _ = log_tick.tick(), if log => {
                log_offset = print_log(client, &r, &op.id, log_offset).await;
            },
        }
        r.update(&op);
    }
    if log {
        // The rest of the log, now complete.
        log_offset = print_log(client, &r, &op.id, log_offset).await;
        let _ = log_offset;
    }
    r.finish(&op);
    Ok(op)
}

/// The next state of operation `id` from the stream; `None` when the
/// stream is gone (ended, lagged or broke). Pending forever without one.
async fn next_for(stream: &mut Option<EventStream>, id: &str) -> Option<Operation> {
    let Some(s) = stream.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match s.next().await {
            Ok(Some(e)) if e.kind == EventType::Operation => {
                if e.payload.get("id").and_then(|v| v.as_str()) != Some(id) {
                    continue;
                }
                match serde_json::from_value::<Operation>(e.payload) {
                    Ok(op) => return Some(op),
                    Err(_) => continue,
                }
            }
            Ok(Some(e)) if e.kind == EventType::Lagged => return None,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

async fn print_log(client: &Client, r: &Renderer, id: &str, mut offset: u64) -> u64 {
    loop {
        match client.op_log(id, offset).await {
            Ok(chunk) => {
                for line in &chunk.lines {
                    r.log(line);
                }
                let more = chunk.next_offset > offset && !chunk.lines.is_empty();
                offset = chunk.next_offset;
                if !more {
                    return offset;
                }
            }
            // A viewer may not read logs: say it once, by not printing more.
            Err(_) => return offset,
        }
    }
}

/// An operation that ended other than `succeeded`, as the error to exit with.
pub fn outcome(op: Operation) -> Result<Operation, ClientError> {
    match op.status {
        OpStatus::Succeeded | OpStatus::Queued | OpStatus::Running => Ok(op),
        status => Err(ClientError::OperationFailed {
            id: op.id,
            kind: op.kind,
            status,
            error: op.error,
        }),
    }
}
