//! Tests of the paced client: response framing, quantiles against a naive reference, and
//! runs against tiny local servers (steady, stalling, closing after each answer, too slow).

use super::*;
use std::io::{Read, Write};

#[test]
fn responses_are_delimited() {
    let sluice = b"HTTP/1.1 302 Found\r\nlocation: https://example.com/target\r\ncache-control: private, max-age=0\r\ncontent-length: 0\r\ndate: Sat, 29 Nov 2025 20:00:00 GMT\r\n\r\n";
    assert_eq!(parse_response(sluice), Parsed::Complete { status: 302, len: sluice.len(), close: false });
    assert_eq!(parse_response(&sluice[..sluice.len() - 1]), Parsed::Incomplete);
    let nginx = b"HTTP/1.1 302 Moved Temporarily\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(parse_response(nginx), Parsed::Complete { status: 302, len: nginx.len(), close: true });
    assert_eq!(parse_response(&nginx[..nginx.len() - 2]), Parsed::Incomplete);
    assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), Parsed::Malformed);
    assert_eq!(parse_response(b"SSH-2.0 hello\r\n\r\n"), Parsed::Malformed);
    assert_eq!(parse_response(b"HTTP/1.1 302 Found\r\n\r\n"), Parsed::Malformed, "no content-length");
}

#[test]
fn nearest_rank_quantiles() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(quantile(&v, 0.5), 50);
    assert_eq!(quantile(&v, 0.99), 99);
    assert_eq!(quantile(&v, 1.0), 100);
    assert_eq!(quantile(&v, 0.0), 1);
    assert_eq!(quantile(&[], 0.99), 0);
    assert_eq!(quantile(&[7], 0.5), 7);
}

/// The nearest-rank `q`-quantile by its definition, without sorting: the smallest value
/// `v` of `data` such that at least `q·n` values are `<= v`.
fn naive_quantile(data: &[u64], q: f64) -> u64 {
    let need = q * data.len() as f64;
    data.iter().copied().filter(|&v| data.iter().filter(|&&x| x <= v).count() as f64 >= need).min().unwrap_or(0)
}

#[test]
fn quantiles_match_a_naive_reference() {
    // xorshift-generated latencies with many ties and a long tail.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for n in [1usize, 2, 3, 7, 10, 99, 100, 101, 1000, 1237] {
        let data: Vec<u64> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(10) { 1_000_000 + x % 9_000_000 } else { 50_000 + x % 300 }
            })
            .collect();
        let mut sorted = data.clone();
        sorted.sort_unstable();
        for q in [0.0, 0.001, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(quantile(&sorted, q), naive_quantile(&data, q), "n = {n}, q = {q}");
        }
    }
}

#[test]
fn result_quantiles_are_in_ms() {
    let r = PacedResult { latencies_ns: vec![250_000, 500_000, 1_500_000, 2_500_000], elapsed: Duration::from_secs(2), ..PacedResult::default() };
    assert_eq!(r.quantile_ms(0.5), 0.5);
    assert_eq!(r.quantile_ms(0.99), 2.5);
    assert_eq!(r.achieved_rps(), 2.0);
    assert_eq!(PacedResult::default().achieved_rps(), 0.0);
    assert!(PacedResult::default().quantile_ms(0.5).is_nan(), "no request due: no figure");
}

#[test]
fn failed_requests_count_as_infinitely_slow() {
    // Reference: the naive nearest-rank quantile over every request due, a failure being
    // u64::MAX ns (slower than any answer).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for (answered, timeouts, errors, unexpected) in [(98, 2, 0, 0), (97, 1, 1, 1), (1000, 0, 0, 0), (10, 0, 5, 0), (0, 3, 0, 0), (1, 0, 0, 0)] {
        let mut latencies: Vec<u64> = (0..answered)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                10_000 + x % 5_000_000
            })
            .collect();
        let mut all = latencies.clone();
        all.extend(std::iter::repeat_n(u64::MAX, timeouts + errors + unexpected));
        latencies.sort_unstable();
        let r = PacedResult {
            latencies_ns: latencies,
            timeouts: timeouts as u64,
            errors: errors as u64,
            unexpected_status: unexpected as u64,
            ..PacedResult::default()
        };
        for q in [0.0, 0.5, 0.9, 0.97, 0.98, 0.99, 1.0] {
            let want = match naive_quantile(&all, q) {
                u64::MAX => f64::INFINITY,
                ns => ns as f64 / 1e6,
            };
            assert_eq!(r.quantile_ms(q), want, "answered {answered}, failed {}, q {q}", all.len() - answered);
        }
    }
}

/// How the test server answers the request with this global index (0-based, over all
/// connections): after `delay`, and with `Connection: close` (then closing) when `close`.
type Behaviour = fn(u64) -> (Duration, bool);

/// A tiny HTTP/1.1 server on a free loopback port answering each request with a 302 of 3
/// body bytes, as `behaviour` says.
fn spawn_server(behaviour: Behaviour) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let (delay, close) = behaviour(count.fetch_add(1, Ordering::SeqCst));
                        std::thread::sleep(delay);
                        if close {
                            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc");
                            return;
                        }
                        let _ = s.write_all(b"HTTP/1.1 302 Found\r\nContent-Length: 3\r\n\r\nabc");
                    }
                }
            });
        }
    });
    addr
}

fn config(addr: std::net::SocketAddr, rate: f64, connections: usize, threads: usize, duration_ms: u64) -> PacedConfig {
    PacedConfig {
        addr,
        requests: Arc::new(vec![b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()]),
        rate,
        connections,
        threads,
        duration: Duration::from_millis(duration_ms),
        timer_slack: Duration::from_micros(1),
        busy_poll: false,
        expect_status: 302,
        seed: 1,
    }
}

#[test]
fn paced_run_against_a_local_server() {
    let addr = spawn_server(|_| (Duration::ZERO, false));
    let r = run(&config(addr, 2000.0, 4, 2, 500), &Arc::new(AtomicBool::new(false))).expect("run");
    // 2000/s for 0.5 s over two threads at 1000/s each: thread 0 due at 0, 1, ..., 499 ms,
    // thread 1 at 0.5, 1.5, ..., 499.5 ms → 500 each.
    assert_eq!(r.sent, 1000);
    assert_eq!(r.latencies_ns.len(), 1000);
    assert_eq!((r.errors, r.timeouts, r.unexpected_status), (0, 0, 0));
    assert!(r.latencies_ns.windows(2).all(|w| w[0] <= w[1]));
    if std::path::Path::new("/proc/thread-self/schedstat").exists() {
        // 1,000 requests cost the client thread some CPU.
        assert!(r.client_sched.on_cpu > Duration::ZERO, "{:?}", r.client_sched);
    }
}

#[test]
fn busy_polling_keeps_the_schedule() {
    let addr = spawn_server(|_| (Duration::ZERO, false));
    let r = run(&PacedConfig { busy_poll: true, ..config(addr, 2000.0, 4, 2, 300) }, &Arc::new(AtomicBool::new(false))).expect("run");
    // As in `paced_run_against_a_local_server`: 300 requests per thread.
    assert_eq!((r.sent, r.latencies_ns.len()), (600, 600));
    assert_eq!((r.errors, r.timeouts, r.unexpected_status), (0, 0, 0));
    if std::path::Path::new("/proc/thread-self/schedstat").exists() {
        // Two threads that never sleep for ~0.5 s (0.2 s to connect and start, 0.3 s run)
        // are runnable all along: on a CPU or, on a loaded machine, waiting for one.
        let runnable = r.client_sched.on_cpu + r.client_sched.waiting;
        assert!(runnable >= Duration::from_millis(300), "{:?}", r.client_sched);
    }
}

#[test]
fn a_stalled_answer_is_charged_to_the_requests_queued_behind_it() {
    // One connection at 50/s (due every 20 ms) for 600 ms: 30 requests. The server holds
    // the 5th answer (due at 80 ms) for 410 ms, so the requests due at 100, 120, ... ms wait
    // for the connection; measured from their due instants, request j (j ≥ 4) takes about
    // 410 - 20·(j - 4) ms until the queue has drained. A closed-loop client would report
    // one slow request; here every request due during the stall is slow.
    let addr = spawn_server(|i| (if i == 4 { Duration::from_millis(410) } else { Duration::ZERO }, false));
    let r = run(&config(addr, 50.0, 1, 1, 600), &Arc::new(AtomicBool::new(false))).expect("run");
    assert_eq!((r.sent, r.latencies_ns.len()), (30, 30));
    assert_eq!((r.errors, r.timeouts, r.unexpected_status), (0, 0, 0));
    // Reference: the latencies of the queueing model above, in ms, ascending (as
    // `latencies_ns`). The model is a lower bound: a held answer is never early, and request
    // j cannot leave before the answer ahead of it on the one connection.
    let mut model: Vec<u64> = (0..30u64).map(|j| if (4..=24).contains(&j) { 410 - 20 * (j - 4) } else { 0 }).collect();
    model.sort_unstable();
    let measured: Vec<u64> = r.latencies_ns.iter().map(|&ns| ns / 1_000_000).collect();
    // A loaded machine lengthens the stall (the server's sleep oversleeps) and so every
    // request queued behind it by the same amount; scheduling noise adds up to 50 ms more.
    let over = measured[29].saturating_sub(410);
    assert!(over < 200, "the stall took {} ms instead of 410: {measured:?}", measured[29]);
    for (i, (&m, &want)) in measured.iter().zip(&model).enumerate() {
        assert!(m + 1 >= want, "request {i} faster than the queue allows ({m} < {want} ms): {measured:?}");
        assert!(m <= want + over + 50, "request {i} slower than the stall explains ({m} > {want} + {over} + 50 ms): {measured:?}");
    }
    // What a closed-loop client would miss: 16 requests waited at least 100 ms.
    assert!(measured.iter().filter(|&&l| l >= 100).count() >= 16, "{measured:?}");
}

#[test]
fn connections_the_server_closes_are_reopened() {
    // nginx-style `Connection: close` on every answer: each request needs a new connection.
    let addr = spawn_server(|_| (Duration::ZERO, true));
    let r = run(&config(addr, 500.0, 2, 1, 200), &Arc::new(AtomicBool::new(false))).expect("run");
    assert_eq!((r.sent, r.latencies_ns.len()), (100, 100));
    assert_eq!((r.errors, r.timeouts, r.unexpected_status), (0, 0, 0));
    assert_eq!(r.reconnects, 100, "one new connection after each answer");
}

#[test]
fn answers_missing_at_the_deadline_are_timeouts() {
    // One connection at 50/s for 100 ms: requests due at 0, 20, 40, 60 and 80 ms. The 3rd
    // answer takes 3 s, past the 2 s grace after the run, so it times out, and the 4th and
    // 5th, due while the only connection waits for it, are never sent: 3 timeouts.
    let addr = spawn_server(|i| (if i == 2 { Duration::from_secs(3) } else { Duration::ZERO }, false));
    let r = run(&config(addr, 50.0, 1, 1, 100), &Arc::new(AtomicBool::new(false))).expect("run");
    assert_eq!((r.sent, r.latencies_ns.len()), (3, 2));
    assert_eq!((r.errors, r.timeouts, r.unexpected_status), (0, 3, 0));
    // 2 answers over the 100 ms run, not over the 20 ms until the last answer.
    assert_eq!(r.achieved_rps(), 20.0);
    assert!(r.quantile_ms(0.5).is_infinite(), "3 of 5 requests due failed");
}

#[test]
fn prefaulted_buffer_is_empty_with_room_for_every_latency() {
    for n in [1, 1000, 300_000] {
        let v = super::prefaulted(n);
        assert!(v.is_empty(), "n = {n}");
        assert!(v.capacity() >= n, "n = {n}: capacity {}", v.capacity());
    }
}
