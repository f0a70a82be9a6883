//! Integration tests: each starts a real `stratus serve` on 127.0.0.1:0 with a
//! temporary data directory, deploys components built from `examples/`, and
//! talks HTTP. One module per area of the spec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod admin;
mod aliases;
mod authoring;
mod cli;
mod clients;
mod cluster;
mod config;
mod crash;
mod credentials;
mod cross_account;
mod deploy;
mod hostile;
mod isolation;
mod limits;
mod logs;
mod openapi;
mod outbound;
mod quotas;
mod readme;
mod reservations;
mod restart;
mod shutdown;
mod supply_chain;
mod tenancy;
mod trigger;
mod up;
