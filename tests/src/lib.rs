//! Shared integration-test harness.
