//! The anomaly store after an I/O error and with its file deleted or replaced (`recovery.rs`).
