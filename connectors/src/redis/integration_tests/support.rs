//! Helpers of the Redis integration tests: server address, fresh prefixes, polling, a
//! private `redis-server` the outage tests stop and restart, and an exact-set reference
//! implementation of [`SketchUnion`].

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::{RedisConfig, RedisUrl, SketchUnion};

pub use super::wait::wait_until;

/// The shared server (`infra/services/redis.sh start`).
pub fn redis_url() -> String {
    std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into())
}

/// A config on `url` with a fresh key prefix.
pub fn fresh_config(tag: &str, url: &str) -> RedisConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    RedisConfig {
        url: Some(RedisUrl(url.to_string())),
        key_prefix: format!("it:{tag}:{}:", &id[..10]),
        sink_backoff_min: Duration::from_millis(20),
        sink_backoff_max: Duration::from_millis(200),
        breaker_open_for: Duration::from_millis(200),
        ..RedisConfig::default()
    }
}

/// A plain connection for reading state back.
pub async fn conn(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url).expect("url").get_multiplexed_async_connection().await.expect("connect to redis")
}

/// A `redis-server` of this test alone, on a free loopback port, no persistence.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    /// With persistence (AOF, fsync always) in this directory: data survives a kill.
    dir: Option<tempfile::TempDir>,
}

impl PrivateRedis {
    /// Without persistence.
    #[allow(dead_code)]
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut r = PrivateRedis { port, child: None, dir: None };
        r.restart();
        r
    }

    /// With an append-only file fsync'd on every write, so a killed server restarts with its
    /// data (a Redis restart or a network outage, as opposed to losing the data).
    pub fn start_persistent() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut r = PrivateRedis { port, child: None, dir: Some(tempfile::tempdir().expect("tempdir")) };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on the same port and waits for PING.
    pub fn restart(&mut self) {
        let mut args: Vec<String> =
            ["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--enable-debug-command", "yes"].map(String::from).to_vec();
        match &self.dir {
            Some(d) => args.extend(["--appendonly", "yes", "--appendfsync", "always", "--dir", &d.path().display().to_string()].map(String::from)),
            None => args.extend(["--appendonly", "no"].map(String::from)),
        }
        let child = Command::new(std::env::var("SLUICE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(c) = ::redis::Client::open(self.url())
                && let Ok(mut c) = c.get_connection_with_timeout(Duration::from_millis(100))
                && ::redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reference [`SketchUnion`] for exact-set sketches (format version 1, kind 0): decode both
/// id lists, take the set union, re-encode. Rejects any other kind.
pub struct ExactUnion;

pub fn exact_sketch(ids: &[u64]) -> Vec<u8> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = vec![1u8, 0];
    put_varint(&mut out, ids.len() as u64);
    let mut prev = 0;
    for id in ids {
        put_varint(&mut out, id - prev);
        prev = id;
    }
    out
}

pub fn decode_exact(b: &[u8]) -> Result<Vec<u64>, String> {
    if b.len() < 3 || b[0] != 1 || b[1] != 0 {
        return Err("not an exact sketch".into());
    }
    let mut pos = 2;
    let mut varint = || -> Result<u64, String> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = *b.get(pos).ok_or("truncated")?;
            pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
    };
    let n = varint()?;
    let mut ids = Vec::new();
    let mut prev = 0;
    for _ in 0..n {
        prev += varint()?;
        ids.push(prev);
    }
    Ok(ids)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl SketchUnion for ExactUnion {
    fn union(&self, a: &[u8], b: &[u8]) -> Result<(Vec<u8>, u64), String> {
        let mut ids = decode_exact(a)?;
        ids.extend(decode_exact(b)?);
        let s = exact_sketch(&ids);
        let n = decode_exact(&s)?.len() as u64;
        Ok((s, n))
    }
}
