"""chdb_http: a ClickHouse HTTP interface (the subset the `clickhouse` Rust crate uses) over chdb."""
