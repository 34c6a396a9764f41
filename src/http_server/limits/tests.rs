//! Unit tests of the connection registry: keys, counts, which connection makes room.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::FutureExt as _;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn limits(max_connections: usize, max_per_client: usize, exempt: &[&str]) -> ConnectionLimits {
    ConnectionLimits { max_connections, max_per_client, exempt: exempt.iter().map(|n| n.parse().expect("net")).collect() }
}

/// Whether `a` was closed to make room.
fn evicted(a: &Admitted) -> bool {
    a.activity.evicted().now_or_never().is_some()
}

#[test]
fn client_keys_are_ipv4_addresses_and_ipv6_slash_64s() {
    assert_eq!(ClientKey::of(ip("192.0.2.7")), ClientKey::V4(u32::from(Ipv4Addr::new(192, 0, 2, 7))));
    assert_ne!(ClientKey::of(ip("192.0.2.7")), ClientKey::of(ip("192.0.2.8")));
    // IPv4-mapped IPv6 is the IPv4 client.
    assert_eq!(ClientKey::of(ip("::ffff:192.0.2.7")), ClientKey::of(ip("192.0.2.7")));
    // One /64: the same client whatever the interface id.
    assert_eq!(ClientKey::of(ip("2001:db8:1:2::1")), ClientKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
    assert_eq!(ClientKey::of(ip("2001:db8:1:2::1")), ClientKey::V6(0x2001_0db8_0001_0002));
    assert_ne!(ClientKey::of(ip("2001:db8:1:2::1")), ClientKey::of(ip("2001:db8:1:3::1")));
    assert_eq!(ClientKey::of(IpAddr::V6(Ipv6Addr::LOCALHOST)), ClientKey::V6(0));
}

#[test]
fn the_derived_limit_keeps_a_reserve_of_descriptors() {
    assert_eq!(fd_reserve(20_000, 40), 1024);
    assert_eq!(derived_max_connections(20_000, 40), 18_976);
    assert_eq!(derived_max_connections(4096, 40), 3072);
    // Under 4,096: a quarter is kept.
    assert_eq!(fd_reserve(1024, 40), 256);
    assert_eq!(derived_max_connections(1024, 40), 768);
    // Finding (newcomer, session 58): under `ulimit -Hn 64` a quarter (16) was fewer than
    // the process had open, so accepts failed with EMFILE while 48 idle connections were
    // within the limit, and /healthz timed out. Now what is open plus a headroom is kept.
    assert_eq!(fd_reserve(64, 40), 40 + FD_HEADROOM);
    assert_eq!(derived_max_connections(64, 40), 1);
    assert_eq!(derived_max_connections(256, 40), 256 - 104);
    assert_eq!(derived_max_connections(3, 0), 1);
    assert_eq!(derived_max_connections(0, 0), 1);
    assert!(!leaves_no_reserve(18_976, 20_000, 40));
    assert!(leaves_no_reserve(18_977, 20_000, 40));
    assert!(leaves_no_reserve(153, 256, 40));
    assert!(leaves_no_reserve(usize::MAX, 20_000, 40), "no overflow");
    assert!(leaves_no_reserve(1, 0, 0));
    assert!(open_fds() >= 3, "at least stdin, stdout, stderr");
    let r = ConnRegistry::new(&limits(0, 0, &[]));
    let want = fd_limit().map_or(usize::MAX, |n| derived_max_connections(n, open_fds()));
    assert!(r.max_connections().abs_diff(want) <= 8, "{} vs {want}", r.max_connections());
    assert_eq!(ConnRegistry::new(&limits(7, 0, &[])).max_connections(), 7);
}

#[test]
fn a_client_over_its_limit_closes_its_least_recently_active_idle_connection() {
    set_ticks(10);
    let r = ConnRegistry::new(&limits(100, 3, &[]));
    let a = r.admit(ip("10.0.0.1")).expect("a");
    let b = r.admit(ip("10.0.0.1")).expect("b");
    let c = r.admit(ip("10.0.0.1")).expect("c");
    let other = r.admit(ip("10.0.0.2")).expect("another client");
    assert_eq!(r.open(), 4);
    // a reads later than b and c: b is the least recently active (c ties with b, b is older).
    set_ticks(15);
    a.activity.on_read(10);
    let d = r.admit(ip("10.0.0.1")).expect("d makes room");
    assert!(!evicted(&a) && evicted(&b) && !evicted(&c) && !evicted(&d) && !evicted(&other));
    assert_eq!(r.open(), 4, "b no longer counts");
    // b's task ends: not counted twice.
    drop(b);
    assert_eq!(r.open(), 4);
    // Busy connections are never closed to make room: with all three busy, a fourth is refused.
    for x in [&a, &c, &d] {
        x.activity.on_request();
    }
    assert!(matches!(r.admit(ip("10.0.0.1")), Err(Limit::Client)));
    assert_eq!(r.open(), 4);
    // The other client is not affected.
    let other2 = r.admit(ip("10.0.0.2")).expect("other client");
    // An answered request makes its connection idle again (and active now).
    set_ticks(20);
    c.activity.on_answered();
    let e = r.admit(ip("10.0.0.1")).expect("c makes room");
    assert!(evicted(&c) && !evicted(&a) && !evicted(&d) && !evicted(&e));
    drop((a, c, d, e, other, other2));
    assert_eq!(r.open(), 0);
}

#[test]
fn the_server_limit_closes_the_least_recently_active_idle_connection_of_any_client() {
    set_ticks(100);
    let r = ConnRegistry::new(&limits(3, 0, &[]));
    let a = r.admit(ip("10.0.0.1")).expect("a");
    set_ticks(101);
    let b = r.admit(ip("10.0.0.2")).expect("b");
    let c = r.admit(ip("2001:db8::1")).expect("c");
    a.activity.on_request();
    // a is the oldest but busy: b (older than c at the same tick... b has the lower id).
    let d = r.admit(ip("10.0.0.4")).expect("d");
    assert!(!evicted(&a) && evicted(&b) && !evicted(&c) && !evicted(&d));
    set_ticks(105);
    c.activity.on_write(1, 1);
    // d (tick 101) is now less recently active than c (105).
    let e = r.admit(ip("10.0.0.5")).expect("e");
    assert!(evicted(&d) && !evicted(&c));
    for x in [&c, &e] {
        x.activity.on_request();
    }
    assert!(matches!(r.admit(ip("10.0.0.6")), Err(Limit::Server)));
    assert_eq!(r.open(), 3);
    drop((a, b, c, d, e));
    assert_eq!(r.open(), 0);
}

#[test]
fn trusted_proxies_are_not_limited_per_client_but_count_toward_the_total() {
    set_ticks(1);
    let r = ConnRegistry::new(&limits(5, 1, &["10.1.0.0/16"]));
    let proxied: Vec<_> = (0..4).map(|_| r.admit(ip("10.1.2.3")).expect("proxy")).collect();
    assert!(proxied.iter().all(|p| !evicted(p)));
    let x = r.admit(ip("192.0.2.1")).expect("x");
    // A second connection of the limited client closes its first one, not a proxy's.
    let y = r.admit(ip("192.0.2.1")).expect("y");
    assert!(evicted(&x) && proxied.iter().all(|p| !evicted(p)));
    // The total is full (4 + y): a new proxy connection closes the least recently active
    // idle connection of all, the proxy's oldest.
    let z = r.admit(ip("10.1.2.3")).expect("z");
    assert!(evicted(&proxied[0]) && !evicted(&y) && !evicted(&z));
    assert_eq!(r.open(), 5);
}

#[test]
fn activity_notes_reads_and_writes() {
    set_ticks(3);
    let a = ConnActivity::new();
    assert!(!a.read_since_write());
    a.on_read(0);
    assert!(!a.read_since_write(), "an empty read is no read");
    a.on_read(5);
    assert!(a.read_since_write());
    assert_eq!(a.room_since(), Some((Room::Idle, 3)));
    set_ticks(4);
    a.on_write(0, 0);
    assert!(a.read_since_write(), "an empty write is no write");
    a.on_write(7, 7);
    assert!(!a.read_since_write());
    assert_eq!(a.room_since(), Some((Room::Idle, 4)));
    a.on_request();
    assert_eq!(a.room_since(), None, "busy");
    assert!(!a.closable_now());
    set_ticks(9);
    a.on_answered();
    assert_eq!(a.room_since(), Some((Room::Idle, 9)));
    // An answer still going out to a slow reader: never closed for room.
    a.on_write(100, 4096);
    assert_eq!(a.room_since(), None, "a partial write");
    a.on_write(3996, 3996);
    assert_eq!(a.room_since(), Some((Room::Idle, 9)));
    a.on_write_blocked();
    assert_eq!(a.room_since(), None, "a write waiting for the socket");
    a.on_write(10, 10);
    // A request body arriving, an SSE stream: interruptible.
    a.on_request();
    a.on_body(true);
    assert_eq!(a.room_since(), Some((Room::Interruptible, 9)));
    assert!(a.closable_now());
    a.on_body(false);
    assert_eq!(a.room_since(), None, "the body arrived, the handler runs");
    a.on_stream();
    assert_eq!(a.room_since(), Some((Room::Interruptible, 9)));
    a.on_answered();
    assert_eq!(a.room_since(), Some((Room::Idle, 9)), "the stream ended");
}

#[test]
fn idle_connections_make_room_before_interruptible_ones() {
    set_ticks(1);
    let r = ConnRegistry::new(&limits(3, 0, &[]));
    let stream = r.admit(ip("10.0.0.1")).expect("stream");
    stream.activity.on_request();
    stream.activity.on_stream();
    let upload = r.admit(ip("10.0.0.2")).expect("upload");
    upload.activity.on_request();
    upload.activity.on_body(true);
    set_ticks(50);
    let idle = r.admit(ip("10.0.0.3")).expect("idle");
    // The idle one goes first although the others are less recently active.
    let a = r.admit(ip("10.0.0.4")).expect("a");
    assert!(evicted(&idle) && !evicted(&stream) && !evicted(&upload));
    a.activity.on_request();
    // Then the least recently active interruptible one (stream and upload tie at tick 1:
    // the older, the stream).
    let b = r.admit(ip("10.0.0.5")).expect("b");
    assert!(evicted(&stream) && !evicted(&upload));
    b.activity.on_request();
    let c = r.admit(ip("10.0.0.6")).expect("c");
    assert!(evicted(&upload));
    c.activity.on_request();
    // Nothing left to close: a, b, c are busy.
    assert!(matches!(r.admit(ip("10.0.0.7")), Err(Limit::Server)));
}

#[tokio::test]
async fn every_waiter_hears_the_eviction() {
    let r = ConnRegistry::new(&limits(1, 0, &[]));
    let a = r.admit(ip("10.0.0.1")).expect("a");
    let (w1, w2) = (a.activity.clone(), a.activity.clone());
    let t1 = tokio::spawn(async move { w1.evicted().await });
    let t2 = tokio::spawn(async move { w2.evicted().await });
    tokio::task::yield_now().await;
    let _b = r.admit(ip("10.0.0.2")).expect("b");
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        t1.await.expect("t1");
        t2.await.expect("t2");
    })
    .await
    .expect("both woken");
    // And one that starts waiting afterwards returns at once.
    assert!(evicted(&a));
}
