//! The anomaly writer against a real anomaly store.
