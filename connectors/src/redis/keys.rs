//! The Redis key layout (documented for dashboard authors in the repository README, section
//! "Redis and ClickHouse").
//!
//! Every key starts with the configured prefix `P` (default `sluice:`). Keys of one link put
//! the code in braces, `{code}`: a Redis Cluster hash tag, so all keys of a link live in one
//! slot and the sink's Lua scripts may touch several of them. Codes are
//! `[A-Za-z0-9_-]{1,64}`, so they never contain braces themselves.

/// Builds key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `sluice:`).
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P link:{code}`: STRING, the L2 link cache entry (JSON of the link, or `-` for a
    /// negative entry).
    pub fn link(&self, code: &str) -> String {
        format!("{}link:{{{code}}}", self.prefix)
    }

    /// `P link-invalidations`: pub/sub channel, messages `<origin>\n<code>`.
    pub fn invalidation_channel(&self) -> String {
        format!("{}link-invalidations", self.prefix)
    }

    /// `P v:{code}:totals`: HASH `clicks`, `bot_clicks`, `uniques` (all time, over retained days).
    pub fn totals(&self, code: &str) -> String {
        format!("{}v:{{{code}}}:totals", self.prefix)
    }

    /// `P v:{code}:sketch`: STRING, the all-time union visitor sketch (non-bot clicks).
    pub fn sketch(&self, code: &str) -> String {
        format!("{}v:{{{code}}}:sketch", self.prefix)
    }

    /// `P v:{code}:d:<day_ms>`: HASH of one UTC day: `clicks`, `bot_clicks`, `uniques`.
    pub fn day(&self, code: &str, day_ms: i64) -> String {
        format!("{}v:{{{code}}}:d:{day_ms}", self.prefix)
    }

    /// `P v:{code}:d:<day_ms>:<dim>`: ZSET of one UTC day, member = value, score = clicks;
    /// `dim` is `country` or `referrer`.
    pub fn day_top(&self, code: &str, day_ms: i64, dim: &str) -> String {
        format!("{}v:{{{code}}}:d:{day_ms}:{dim}", self.prefix)
    }

    /// `P v:{code}:top:<dim>`: ZSET all time, member = value, score = clicks.
    pub fn top(&self, code: &str, dim: &str) -> String {
        format!("{}v:{{{code}}}:top:{dim}", self.prefix)
    }

    /// `P v:{code}:m:<minute_ms>`: HASH of one UTC minute: `clicks`, `bot_clicks`, `uniques`.
    pub fn minute(&self, code: &str, minute_ms: i64) -> String {
        format!("{}v:{{{code}}}:m:{minute_ms}", self.prefix)
    }

    /// `P v:{code}:minutes`: ZSET index of the minute keys of the last hour, member = score =
    /// minute start ms.
    pub fn minutes(&self, code: &str) -> String {
        format!("{}v:{{{code}}}:minutes", self.prefix)
    }

    /// `P top:links`: ZSET of links by all-time non-bot clicks.
    pub fn top_links(&self) -> String {
        format!("{}top:links", self.prefix)
    }

    /// `P views:marker`: STRING `1`, set by the view sink when it finds it missing (a new
    /// Redis, or one that lost its data): its absence tells the sink to have every row
    /// resent.
    pub fn views_marker(&self) -> String {
        format!("{}views:marker", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("sluice:");
        assert_eq!(k.link("ab_1"), "sluice:link:{ab_1}");
        assert_eq!(k.totals("ab"), "sluice:v:{ab}:totals");
        assert_eq!(k.day_top("ab", 86_400_000, "country"), "sluice:v:{ab}:d:86400000:country");
        assert_eq!(k.minute("ab", 60_000), "sluice:v:{ab}:m:60000");
        assert_eq!(k.minutes("ab"), "sluice:v:{ab}:minutes");
        assert_eq!(k.top("ab", "referrer"), "sluice:v:{ab}:top:referrer");
        assert_eq!(k.top_links(), "sluice:top:links");
        assert_eq!(k.invalidation_channel(), "sluice:link-invalidations");
    }
}
