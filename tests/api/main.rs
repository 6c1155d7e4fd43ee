//! One integration-test binary: the real server, real HTTP, real SQLite files.

mod admin;
mod backup;
mod bills;
mod browser;
mod cart;
mod catalogue;
mod cli;
mod client;
mod closing;
mod crash;
mod doctor;
mod fidelity;
mod helpers;
mod hostile;
mod notify;
mod notify_health;
mod privacy;
mod reconcile;
mod refunds;
mod replicas;
mod sandbox;
mod sandbox_bill;
mod sandbox_refunds;
mod server;
mod shop;
mod webhooks;
