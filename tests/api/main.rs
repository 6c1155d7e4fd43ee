//! One integration-test binary: the real server, real HTTP, real SQLite files.

mod client;
mod helpers;
mod sandbox;
mod server;
