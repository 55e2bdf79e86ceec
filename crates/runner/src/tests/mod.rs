//! Tests of the runner's parts with real commands.

mod exec;
