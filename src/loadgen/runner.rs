//! The run loop: a pacing loop that schedules request `i` at `start + i / rate` (never
//! earlier), bounded by a semaphore of `concurrency` permits (when the server is slower
//! than the rate, the achieved rate drops and is reported instead of piling up requests),
//! plus a once-per-second tick that posts late events and duplicates. Sending stops at
//! `start + duration`; requests in flight are then awaited (up to the request timeout).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::attack::Attack;
use super::client::{EventsAnswer, Http};
use super::data::UserAgents;
use super::ips::IpPools;
use super::plan::{Mix, TrafficModel, UaTable, Visitor};
use super::report::{AttackReport, InjectStats, LoadgenReport, RequestStats};
use super::truth::{TruthBuilder, period_index};
use super::{LoadgenArgs, Settings};

/// No redirect is sent this close to a salt-period boundary (ms), so the server's clock
/// and ours agree on every redirect's period.
pub const PERIOD_GUARD_MS: i64 = 2_000;
/// Seeds of the IP pools and of the late-event model, derived from `--seed`.
const IP_SEED: u64 = 0x1b5e_ed00_0000_0001;
const LATE_SEED: u64 = 0x1a7e_0000_0000_0002;
const ATTACK_SEED: u64 = 0xa77a_c000_0000_0003;
/// Attempts of one events post (retries are safe: the pipeline dedups by `event_id`).
const POST_ATTEMPTS: u32 = 3;
/// A request due before the end is still sent this long after the end (scheduling
/// hiccups do not change the request count); later ones are dropped.
const LATE_GRACE: Duration = Duration::from_millis(500);
/// Posted events kept as candidates for duplicates.
const HISTORY: usize = 100_000;

/// Wall clock, ms since the Unix epoch, UTC.
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long to wait before sending at `now_ms` so that no request is within `guard_ms` of a
/// boundary of `period_ms`; `None` when sending is fine now.
pub fn boundary_wait(period_ms: Option<i64>, now_ms: i64, guard_ms: i64) -> Option<Duration> {
    let p = period_ms.filter(|p| *p > 2 * guard_ms)?;
    let r = now_ms.rem_euclid(p);
    let wait_ms = if r < guard_ms {
        guard_ms - r
    } else if r >= p - guard_ms {
        p - r + guard_ms
    } else {
        return None;
    };
    Some(Duration::from_millis(wait_ms as u64))
}

/// One posted event, as the truth needs it.
#[derive(Debug, Clone)]
struct Posted {
    json: Value,
    id: Uuid,
    link: usize,
    ts: i64,
    visitor: Visitor,
}

struct Shared {
    truth: TruthBuilder,
    requests: RequestStats,
    injected: InjectStats,
}

/// Accumulates a fractional per-second amount; returns the whole events due now.
fn take_due(acc: &mut f64, per_second: f64) -> usize {
    *acc += per_second;
    let n = acc.floor();
    *acc -= n;
    n as usize
}

/// How many requests the run's loop sends in `window` when the `i`-th is due `i × interval`
/// seconds after the window opens (`i` from 0, due strictly before the window closes): the
/// count the progress bar and the report plan, computed with the loop's own arithmetic so
/// that it is the number sent on time (`rate × duration` rounded was one short when the
/// product has a fraction: the request at 0 s counts too).
pub(crate) fn due_count(interval: f64, window: Duration) -> u64 {
    let due = |i: u64| Duration::from_secs_f64(i as f64 * interval);
    let mut n = (window.as_secs_f64() / interval).ceil().max(0.0) as u64;
    while n > 0 && due(n - 1) >= window {
        n -= 1;
    }
    while due(n) < window {
        n += 1;
    }
    n
}

pub(crate) async fn run(args: &LoadgenArgs, s: &Settings) -> anyhow::Result<LoadgenReport> {
    let seed = args.seed;
    let (uas, ips) = tokio::task::spawn_blocking(move || {
        let uas = UaTable::new(UserAgents::load()?);
        let ips = IpPools::build(&mut ChaCha8Rng::seed_from_u64(seed ^ IP_SEED))?;
        Ok::<_, anyhow::Error>((Arc::new(uas), Arc::new(ips)))
    })
    .await
    .context("data loading task failed")??;
    let http = Http::new(args.target.clone(), s.api.clone(), s.token.clone(), args.concurrency, args.timeout)?;
    let codes: Arc<Vec<String>> = Arc::new(if args.codes.is_empty() { http.create_links(args.links, args.seed).await? } else { args.codes.clone() });
    let truth = {
        let (codes, period) = (Arc::clone(&codes), s.period_ms);
        tokio::task::spawn_blocking(move || TruthBuilder::new(&codes, period)).await.context("classifier loading task failed")??
    };
    let mix = Mix { zipf_exponent: args.zipf, bot_share: args.bot_share, head_share: args.head_share, repeat_share: args.repeat_share, ..Mix::default() };
    let mut traffic = TrafficModel::new(args.seed, codes.len(), mix, Arc::clone(&uas), Arc::clone(&ips));
    let mut late = TrafficModel::new(args.seed.wrapping_add(LATE_SEED), codes.len(), mix, Arc::clone(&uas), Arc::clone(&ips));
    let mut attack = attack_plan(args, &codes, mix, &uas, &ips)?;
    // the attack's window as offsets from the first request
    let attack_window = super::attack_window(args);
    let attack_interval = 1.0 / args.attack_rate.unwrap_or(args.rate.max(20.0));
    let interval = 1.0 / args.rate;
    let planned = due_count(interval, args.duration) + due_count(attack_interval, attack_window.end - attack_window.start);
    let shared = Arc::new(Mutex::new(Shared { truth, requests: RequestStats { planned, ..RequestStats::default() }, injected: InjectStats::default() }));
    let pb = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(planned) };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} requests ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let mut posts: JoinSet<()> = JoinSet::new();
    let mut history: Vec<Posted> = Vec::new();
    let (mut late_acc, mut dup_acc) = (0.0, 0.0);
    let max_late_ms = i64::try_from(args.max_lateness.as_millis()).unwrap_or(i64::MAX).max(1_001);
    let start = Instant::now();
    let end = start + args.duration;
    let mut offset = Duration::ZERO;
    let mut next_tick = start + Duration::from_secs(1);
    let mut i: u64 = 0;
    let (attack_start, attack_end) = (start + attack_window.start, start + attack_window.end);
    let mut j: u64 = 0;
    let mut attack_sent: Option<(i64, i64)> = None;
    loop {
        let due_normal = start + offset + Duration::from_secs_f64(i as f64 * interval);
        let due_attack = attack.as_ref().map(|_| attack_start + offset + Duration::from_secs_f64(j as f64 * attack_interval)).filter(|d| *d < attack_end);
        let (due, is_attack) = match due_attack {
            Some(a) if a < due_normal => (a, true),
            _ => (due_normal, false),
        };
        if due >= end {
            break;
        }
        if next_tick <= due && next_tick < end {
            tokio::time::sleep_until(next_tick.into()).await;
            next_tick += Duration::from_secs(1);
            let batch = plan_batch(
                &mut late,
                &codes,
                &uas,
                &mut history,
                take_due(&mut late_acc, args.late_share * args.rate),
                take_due(&mut dup_acc, args.duplicate_share * args.rate),
                max_late_ms,
                &shared,
            );
            if !batch.is_empty() {
                let (http, shared, codes, uas) = (http.clone(), Arc::clone(&shared), Arc::clone(&codes), Arc::clone(&uas));
                posts.spawn(post_batch(http, batch, shared, codes, uas));
            }
            let st = shared.lock();
            pb.set_message(format!(
                "3xx {} failed {} events {}",
                st.requests.statuses.range(300..400).map(|(_, n)| n).sum::<u64>(),
                st.requests.failures.values().sum::<u64>(),
                st.injected.accepted
            ));
            continue;
        }
        tokio::time::sleep_until(due.into()).await;
        if let Some(wait) = boundary_wait(s.period_ms, wall_ms(), PERIOD_GUARD_MS) {
            tokio::time::sleep(wait).await;
            offset += wait;
            shared.lock().requests.paused += wait;
            continue;
        }
        let permit = Arc::clone(&sem).acquire_owned().await.context("request semaphore closed")?;
        if Instant::now() >= end + LATE_GRACE {
            // the server is slower than the rate: stop at the end instead of catching up
            break;
        }
        let req = match (&mut attack, is_attack) {
            (Some(a), true) => {
                j += 1;
                let now = wall_ms();
                attack_sent = Some((attack_sent.map_or(now, |(first, _)| first), now));
                a.request()
            }
            _ => {
                i += 1;
                traffic.request()
            }
        };
        let (http, shared, codes, uas, pb) = (http.clone(), Arc::clone(&shared), Arc::clone(&codes), Arc::clone(&uas), pb.clone());
        tokio::spawn(async move {
            let code = &codes[req.link];
            let ua = uas.get(req.visitor.ua);
            let sent_ms = wall_ms();
            let res = http.redirect(code, &req, ua).await;
            let done_ms = wall_ms();
            let mut guard = shared.lock();
            let st = &mut *guard;
            st.requests.sent += 1;
            if req.head {
                st.requests.heads += 1;
            }
            match res {
                Ok(status) => {
                    st.requests.answered += 1;
                    *st.requests.statuses.entry(status).or_default() += 1;
                    if !req.head && (300..400).contains(&status) {
                        let period_ms = st.truth_period();
                        if period_index(period_ms, sent_ms) != period_index(period_ms, done_ms) {
                            st.requests.straddling += 1;
                        }
                        st.truth.click(code, sent_ms, req.visitor.ip, ua, None);
                    }
                }
                Err(f) => {
                    *st.requests.failures.entry(f.as_str()).or_default() += 1;
                    if !req.head && f.outcome_unknown() {
                        st.requests.unknown_gets += 1;
                    }
                }
            }
            drop(guard);
            // release the run state before the permit: the end of the run waits for all
            // permits and then takes the state back
            drop(shared);
            pb.inc(1);
            drop(permit);
        });
    }
    let send_end = Instant::now();
    let stuck = tokio::time::timeout(args.timeout + Duration::from_secs(5), sem.acquire_many(args.concurrency as u32)).await.is_err();
    while posts.join_next().await.is_some() {}
    pb.finish_and_clear();
    let elapsed = start.elapsed();
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("request tasks still hold the run state"));
    let Shared { truth, requests, injected } = match shared {
        Ok(m) => m.into_inner(),
        Err(e) if stuck => return Err(e.context("requests did not finish within the timeout")),
        Err(e) => return Err(e),
    };
    let sending = send_end.duration_since(start).max(Duration::from_millis(1));
    let achieved_rate = requests.answered as f64 / sending.as_secs_f64();
    let mut notes = Vec::new();
    if requests.unknown_gets > 0 {
        notes.push(format!("{} GET requests got no answer; the server may have counted them", requests.unknown_gets));
    }
    if injected.unknown > 0 {
        notes.push(format!("{} posted events got no answer after {POST_ATTEMPTS} attempts; the server may have stored them", injected.unknown));
    }
    if requests.straddling > 0 {
        notes.push(format!("{} redirects straddled a salt-period boundary: their visitors may be in either period", requests.straddling));
    }
    if let Some(refusal) = &injected.last_refusal {
        notes.push(format!("{} events were refused by POST /v1/events (last: {refusal})", injected.refused));
    }
    if !requests.paused.is_zero() {
        notes.push(format!("sending paused {:.1}s around a salt-period boundary (00:00 UTC for 1d)", requests.paused.as_secs_f64()));
    }
    match s.proxy_trusted {
        Some(true) => {}
        Some(false) => notes.push("the server does not read this host's X-Forwarded-For (server.trusted-proxies, server.forwarded-header): it sees one client address, so its uniques will not match the visitors here".into()),
        None => notes.push("cannot tell whether the server trusts this host's X-Forwarded-For; visitors are exact only if server.trusted-proxies includes this host (pass --server-config to check; `sluice demo` configures it)".into()),
    }
    let attack = attack.map(|a| AttackReport {
        kind: a.kind(),
        code: codes[a.link()].clone(),
        requests: j,
        started_at_ms: attack_sent.map(|(first, _)| first),
        ended_at_ms: attack_sent.map(|(_, last)| last),
    });
    let exact = requests.unknown_gets == 0 && injected.unknown == 0 && requests.straddling == 0;
    Ok(LoadgenReport {
        codes: codes.to_vec(),
        truth: truth.snapshot(),
        requests,
        injected,
        elapsed,
        achieved_rate,
        target_rate: args.rate,
        exact,
        proxy_trusted: s.proxy_trusted,
        attack,
        notes,
    })
}

/// The attack of `--attack`, on `--attack-code` or the link of median popularity.
fn attack_plan(args: &LoadgenArgs, codes: &[String], mix: Mix, uas: &Arc<UaTable>, ips: &Arc<IpPools>) -> anyhow::Result<Option<Attack>> {
    let Some(kind) = args.attack else {
        return Ok(None);
    };
    let link = match &args.attack_code {
        Some(code) => codes.iter().position(|c| c == code).with_context(|| format!("--attack-code \"{code}\" is not one of the run's codes"))?,
        None => codes.len() / 2,
    };
    let model = TrafficModel::new(args.seed.wrapping_add(ATTACK_SEED), codes.len(), mix, Arc::clone(uas), Arc::clone(ips));
    Ok(Some(Attack::new(kind, link, model)))
}

impl Shared {
    fn truth_period(&self) -> Option<i64> {
        self.truth.period_ms()
    }
}

/// Builds one tick's events: `n_late` new late events, then `n_dup` exact copies of
/// earlier ones (from `history`, or of this batch when nothing was posted before).
#[allow(clippy::too_many_arguments)]
fn plan_batch(
    model: &mut TrafficModel,
    codes: &[String],
    uas: &UaTable,
    history: &mut Vec<Posted>,
    n_late: usize,
    n_dup: usize,
    max_late_ms: i64,
    shared: &Mutex<Shared>,
) -> Vec<Posted> {
    let now = wall_ms();
    let mut batch = Vec::with_capacity(n_late + n_dup);
    for _ in 0..n_late {
        let link = model.link();
        let visitor = model.visitor();
        let referrer = model.referrer(model.intended_bot(visitor));
        let ts = now - model.int(1_000..max_late_ms);
        let id = model.event_id();
        let json = json!({
            "event_id": id.to_string(),
            "code": codes[link],
            "ts": ts,
            "ip": visitor.ip.to_string(),
            "user_agent": uas.get(visitor.ua),
            "referrer": referrer,
        });
        batch.push(Posted { json, id, link, ts, visitor });
    }
    let fresh = batch.len();
    let mut dups = 0;
    for _ in 0..n_dup {
        let pool: &[Posted] = if history.is_empty() { &batch[..fresh] } else { history };
        if pool.is_empty() {
            break;
        }
        let copy = pool[model.int(0..pool.len() as i64) as usize].clone();
        batch.push(copy);
        dups += 1;
    }
    if history.len() < HISTORY {
        history.extend(batch[..fresh].iter().take(HISTORY - history.len()).cloned());
    }
    let mut st = shared.lock();
    st.injected.late_events += fresh as u64;
    st.injected.duplicates += dups;
    batch
}

/// Posts a batch (retrying when no answer or 503), then counts what the server accepted.
async fn post_batch(http: Http, batch: Vec<Posted>, shared: Arc<Mutex<Shared>>, codes: Arc<Vec<String>>, uas: Arc<UaTable>) {
    let body: Vec<Value> = batch.iter().map(|p| p.json.clone()).collect();
    // None = no answer and possibly stored; Some(Err) = certainly not stored.
    let mut outcome: Option<Result<EventsAnswer, String>> = None;
    let mut maybe_stored = false;
    for attempt in 1..=POST_ATTEMPTS {
        let last = attempt == POST_ATTEMPTS;
        match http.post_events(&body).await {
            Ok(Ok(answer)) => {
                outcome = Some(Ok(answer));
                break;
            }
            Ok(Err(refusal)) if !refusal.starts_with("503") || last => {
                outcome = (!maybe_stored).then_some(Err(refusal));
                break;
            }
            Ok(Err(_)) => {}
            Err(f) => {
                maybe_stored |= f.outcome_unknown();
                if last && !maybe_stored {
                    outcome = Some(Err(format!("no answer ({})", f.as_str())));
                }
            }
        }
        if !last {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
    let mut guard = shared.lock();
    let st = &mut *guard;
    st.injected.batches += 1;
    match outcome {
        None => st.injected.unknown += batch.len() as u64,
        Some(Err(refusal)) => {
            st.injected.refused += batch.len() as u64;
            st.injected.last_refusal = Some(refusal);
        }
        Some(Ok(answer)) => {
            let rejected: std::collections::HashSet<usize> = answer.rejected.iter().map(|(i, _)| *i).collect();
            for (_, reason) in &answer.rejected {
                *st.injected.rejected.entry(reason.clone()).or_default() += 1;
            }
            st.injected.accepted += answer.accepted;
            for (i, p) in batch.iter().enumerate() {
                if !rejected.contains(&i) {
                    st.truth.click(&codes[p.link], p.ts, p.visitor.ip, uas.get(p.visitor.ua), Some(p.id));
                }
            }
        }
    }
}
